"""The client's own decisions, without servers: certificate selection, the connection type,
the CRL setting and its Options value, the MP choice, and the steps that fail before any
request is sent.

Certificates are made here by hand (a subject, SANs, an EKU, dates); the client is the real
:class:`~lab.client.agent.SimulatedClient` on a real scenario's network, with a real HTTP stack
that these steps never get to use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labtest import INTERNET, INTRA, SCENARIOS

from lab import codes
from lab.client.agent import REQUEST_PATH, SimulatedClient
from lab.client.certselect import Selection, matches_criteria, select_certificate
from lab.client.winhttp import OPENSSL_CATEGORIES, ClientCertFiles, WinHttp
from lab.clock import Clock
from lab.codes import WinHttpFlag
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.pki.build import IssuedCert
from lab.protocols.network import HostMap, Machine, Network
from lab.results.observations import (
    ChainProblem,
    ChainVerdict,
    FailureKind,
    HttpOutcome,
    MpChoice,
    StepObservation,
)
from lab.scenario.loader import load_scenario
from lab.scenario.model import Action, Scenario, StepSpec, Zone

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
SETUP = "ccmsetup.exe /UsePKICert SMSSITECODE=P01"
HTTPS_MP = f"SMSMP=https://{INTRA}"


def make_cert(cn: str, *, sans: tuple[str, ...] = (), eku: tuple[x509.ObjectIdentifier, ...]
              | None = (ExtendedKeyUsageOID.CLIENT_AUTH,), days: tuple[int, int] = (-30, 335),
              ou: str | None = None) -> IssuedCert:
    """A certificate as the Personal store holds it (only the certificate is read)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    name = x509.Name(attrs)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(KEY.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=days[0]))
               .not_valid_after(NOW + dt.timedelta(days=days[1])))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    cert = builder.sign(KEY, hashes.SHA256())
    unused = Path("not-read")
    return IssuedCert(f"{cn}/{days[1]}", cert, b"", unused, unused, unused, "hand-made", False)


def select(store: tuple[IssuedCert, ...], extra: str = "", computer: str = "PC01.contoso.local",
           now: dt.datetime = NOW) -> Selection:
    return select_certificate(store, parse_ccmsetup(f"{SETUP} {extra}".strip()), computer, now)


# -- certificate selection -----------------------------------------------------------------

def test_an_empty_store() -> None:
    assert select(()) == Selection(None, codes.CCM_EMPTY_CERT_STORE,
                                   "the computer's Personal store holds no certificate")


def test_the_computer_name_selects_without_ccmcertsel() -> None:
    mine = make_cert("PC01.contoso.local", sans=("PC01.contoso.local",))
    other = make_cert("PC02.contoso.local", sans=("PC02.contoso.local",))
    got = select((other, mine))
    assert (got.cert, got.error) == (mine, None)
    assert got.detail == "the certificate matching a subject containing the computer name 'pc01'"
    # the name in the SAN alone is enough
    san_only = make_cert("Workstation", sans=("pc01.contoso.local",))
    assert select((san_only,)).cert is san_only


def test_several_matches_need_ccmfirstcert_which_picks_the_longest_valid() -> None:
    short = make_cert("PC01.contoso.local", days=(-30, 100))
    long = make_cert("PC01.contoso.local", days=(-30, 700))
    got = select((short, long))
    assert (got.cert, got.error) == (None, codes.CCM_SEVERAL_CERTS)
    assert got.detail == ("2 certificates match a subject containing the computer name 'pc01' "
                          "and CCMFIRSTCERT=1 was not given")
    got = select((short, long), "CCMFIRSTCERT=1")
    assert (got.cert, got.error) == (long, None)
    assert got.detail == ("2 certificates match a subject containing the computer name 'pc01'; "
                          "CCMFIRSTCERT=1 picks the one with the longest validity")


def test_time_and_usage_filter_before_the_name() -> None:
    expired = make_cert("PC01.contoso.local", days=(-400, -1))
    future = make_cert("PC01.contoso.local", days=(1, 400))
    server_only = make_cert("PC01.contoso.local", eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    got = select((expired, future, server_only))
    assert (got.cert, got.error) == (None, codes.CCM_NO_MATCHING_CERT)
    assert got.detail == ("no certificate in the Personal store matches a subject containing "
                          "the computer name 'pc01' (3 of 3 not time-valid by the computer's "
                          "clock or without Client Authentication)")
    # the twins: no EKU at all means any usage; the computer's own clock decides the dates
    any_usage = make_cert("PC01.contoso.local", eku=None)
    assert select((expired, any_usage)).cert is any_usage
    assert select((future,), now=NOW + dt.timedelta(days=2)).cert is future


def test_ccmcertsel_subject_subjectstr_and_subjectattr() -> None:
    cert = make_cert("PC01.contoso.local", sans=("alias.contoso.local",), ou="Workstations")
    store = (cert,)
    assert select(store, 'CCMCERTSEL="Subject:PC01.contoso.local"').cert is cert
    got = select(store, 'CCMCERTSEL="Subject:pc01.contoso.local"')
    assert (got.cert, got.error) == (None, codes.CCM_NO_MATCHING_CERT)
    assert got.detail == ('no certificate in the Personal store matches '
                          'CCMCERTSEL="Subject:pc01.contoso.local"')
    assert select(store, 'CCMCERTSEL="SubjectStr:CONTOSO"').detail == (
        'the certificate matching CCMCERTSEL="SubjectStr:CONTOSO"')
    assert matches_criteria(cert.cert, "Subject:ALIAS.contoso.local")  # SANs: any case
    full = cert.cert.subject.rfc4514_string()
    assert full == "OU=Workstations,CN=PC01.contoso.local"
    assert matches_criteria(cert.cert, f"Subject:{full}")
    assert matches_criteria(cert.cert, "SubjectStr:workstations")
    assert matches_criteria(cert.cert, "SubjectAttr:2.5.4.11 = Workstations")
    assert not matches_criteria(cert.cert, "SubjectAttr:2.5.4.11=workstations")
    assert not matches_criteria(cert.cert, "SubjectAttr:not-an-oid=Workstations")
    assert not matches_criteria(cert.cert, "Thumbprint:00")


# -- the client's decisions ----------------------------------------------------------------

@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """Two MP names, Contoso's AD domain: the network the decisions are made on."""
    return load_scenario(SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml")


Make = Callable[..., SimulatedClient]


@pytest.fixture
async def make(scenario: Scenario, tmp_path: Path) -> AsyncIterator[Make]:
    """A factory of clients: ``make(command line, domain_joined=..., store=..., ad=...)``."""
    async with aiohttp.ClientSession() as session:
        def build(line: str, *, domain_joined: bool = True, store: tuple[IssuedCert, ...] = (),
                  ad: tuple[str, bool] | None = (INTRA, True)) -> SimulatedClient:
            spec = dataclasses.replace(scenario.clients[0], ccmsetup=parse_ccmsetup(line),
                                       domain_joined=domain_joined, steps=())
            network = Network(scenario)
            machine = Machine(spec.name, Zone.INTRANET, domain_joined, scenario.ad_domain)
            http = WinHttp(machine=machine, network=network, hosts=HostMap(), anchors=(),
                           trust_pem=b"", client_cert=None, clock=Clock(NOW),
                           scratch=tmp_path, session=session)

            def ad_mp(m: Machine) -> tuple[str, bool] | None:
                return ad if network.can_reach_dc(m) else None

            return SimulatedClient(spec, network=network, http=http, ad_mp=ad_mp, store=store)

        yield build


async def test_crl_setting_bootstrap_then_the_site(make: Make) -> None:
    client = make(f"{SETUP} /NoCRLCheck {HTTPS_MP}")
    assert client.crl_setting() == (
        False, "ccmsetup /NoCRLCheck (it governs only until the first site refresh)", 192)
    client = make(f"{SETUP} {HTTPS_MP}")
    assert client.crl_setting() == (
        True, "ccmsetup without /NoCRLCheck (bootstrap: CRL checking on)", 224)
    client.state.refreshed, client.state.site_ssl_state = True, 63
    assert client.crl_setting() == (
        True, "the site's setting learned at the last site refresh (SSLState=63: CRL checking "
              "on)", 63)
    client.state.site_ssl_state = 31
    assert client.crl_setting() == (
        False, "the site's setting learned at the last site refresh (SSLState=31: CRL checking "
               "off)", 31)


async def test_connection_type(make: Make) -> None:
    joined = make(f"{SETUP} {HTTPS_MP}")
    assert joined.connection_type(joined.machine(Zone.INTRANET)) == "intranet"
    assert joined.connection_type(joined.machine(Zone.VPN)) == "intranet"
    assert joined.connection_type(joined.machine(Zone.INTERNET)) == "internet"
    always = make(f"{SETUP} {HTTPS_MP} CCMALWAYSINF=1")
    assert always.connection_type(always.machine(Zone.INTRANET)) == "internet"
    # a workgroup machine has no DC: a known intranet MP that resolves decides
    workgroup = make(f"{SETUP} {HTTPS_MP}", domain_joined=False)
    assert workgroup.connection_type(workgroup.machine(Zone.INTRANET)) == "intranet"
    lost = make(SETUP, domain_joined=False)
    assert lost.connection_type(lost.machine(Zone.INTRANET)) == "internet"


async def test_choose_mp(make: Make) -> None:
    client = make(f"{SETUP} {HTTPS_MP}")
    inside = client.machine(Zone.INTRANET)
    assert client.choose_mp("intranet", inside) == MpChoice(INTRA, True, HTTPS_MP)
    plain = make(f"{SETUP} SMSMP={INTRA}")
    assert plain.choose_mp("intranet", inside) == MpChoice(
        INTRA, False, f"SMSMP={INTRA}, written without https://, so HTTP")
    ad = make(SETUP)
    assert ad.choose_mp("intranet", inside) == MpChoice(
        INTRA, True, "the MP published in Active Directory")
    assert ad.choose_mp("intranet", ad.machine(Zone.INTERNET)) is None
    assert client.choose_mp("internet", inside) is None
    client.state.refreshed, client.state.site_ssl_state = True, 0xC0
    client.state.intranet_mps = ("MP2.contoso.local",)
    assert client.choose_mp("intranet", inside) == MpChoice(
        "MP2.contoso.local", False, "the MP list learned at the last site refresh")
    client.state.internet_mp, client.state.internet_mp_source = INTERNET, "learned"
    assert client.choose_mp("internet", inside) == MpChoice(INTERNET, True, "learned")


# -- steps that fail (or end) before any request ----------------------------------------------

async def step(client: SimulatedClient, action: Action, zone: Zone) -> StepObservation:
    return await client.run_step(StepSpec(action, zone), "s-unit")


async def test_steps_need_an_installed_then_registered_client(make: Make) -> None:
    client = make(f"{SETUP} {HTTPS_MP}")
    obs = await step(client, Action.POLICY, Zone.INTRANET)
    assert (obs.outcome, obs.failure, obs.error) == ("fail", FailureKind.NOT_INSTALLED,
                                                     codes.LAB_CLIENT_NOT_INSTALLED)
    assert obs.detail == "no earlier install step succeeded, so there is no client agent"
    assert (obs.connection, obs.crl_check, obs.options) == ("intranet", True, 224)
    assert obs.requests == [] and obs.target is None and obs.simulated_ms == 0
    client.state.installed = True
    obs = await step(client, Action.INVENTORY, Zone.INTRANET)
    assert (obs.failure, obs.error) == (FailureKind.NOT_REGISTERED,
                                        codes.LAB_CLIENT_NOT_REGISTERED)
    assert obs.detail == ("the client is not registered with the site (no registration "
                          "succeeded), so the MP would not accept its messages")


async def test_install_from_media_on_the_internet_and_without_any_mp(make: Make) -> None:
    media = make(f"{SETUP} /source:D:\\Client CCMHOSTNAME={INTERNET}", domain_joined=False)
    obs = await step(media, Action.INSTALL, Zone.INTERNET)
    assert obs.outcome == "ok" and obs.failure is None and obs.requests == []
    assert obs.notes == ["The client agent was installed from the local media in "
                         "/source:D:\\Client"]
    assert media.state.installed and media.state.internet_mp == INTERNET
    assert media.state.internet_mp_source == f"CCMHOSTNAME={INTERNET}"
    # no source line of one build (reference §6.2 K)
    assert obs.log[0].file == "ccmsetup.log" and obs.log[0].source == ""
    nowhere = make(SETUP, domain_joined=False)
    obs = await step(nowhere, Action.INSTALL, Zone.INTERNET)
    assert (obs.failure, obs.error) == (FailureKind.INSTALL_FROM_INTERNET,
                                        codes.LAB_INSTALL_FROM_INTERNET)
    assert obs.detail == ("the machine is on the internet without a VPN; ccmsetup needs the "
                          "intranet (or /source: media for an internet-only install)")
    assert obs.mp is None and obs.requests == []
    obs = await step(nowhere, Action.INSTALL, Zone.INTRANET)  # knows no MP: "the internet"
    assert (obs.failure, obs.connection) == (FailureKind.INSTALL_FROM_INTERNET, "internet")
    no_ad = make(SETUP, ad=None)
    obs = await step(no_ad, Action.INSTALL, Zone.INTRANET)
    assert (obs.failure, obs.error) == (FailureKind.NO_MP, codes.CCM_MP_NOT_FOUND)
    assert obs.detail == "ccmsetup has no /mp:, no SMSMP and cannot look the MP up in AD"


async def test_no_mp_and_no_internet_mp(make: Make) -> None:
    client = make(SETUP, ad=None)
    client.state.installed = client.state.registered = True
    obs = await step(client, Action.POLICY, Zone.INTRANET)
    assert (obs.failure, obs.error, obs.connection) == (FailureKind.NO_MP,
                                                        codes.CCM_MP_NOT_FOUND, "intranet")
    assert obs.detail == "no SMSMP was given and the machine cannot look the MP up in AD"
    # a workgroup machine that knows no MP cannot even tell it is on the intranet
    lost = make(SETUP, domain_joined=False)
    lost.state.installed = True
    obs = await step(lost, Action.REGISTER, Zone.INTRANET)
    assert (obs.failure, obs.connection) == (FailureKind.NO_INTERNET_MP, "internet")
    joined = make(f"{SETUP} {HTTPS_MP}")
    joined.state.installed = True
    obs = await step(joined, Action.LOCATION, Zone.INTERNET)
    assert (obs.failure, obs.error) == (FailureKind.NO_INTERNET_MP, codes.LAB_NO_INTERNET_MP)
    assert obs.detail == ("the client is on the internet but knows no internet-facing MP: it was "
                          "installed without CCMHOSTNAME and has not refreshed its site "
                          "information on the intranet, where it would have learned the "
                          "internet MP")
    joined.state.internet_mp = INTERNET
    obs = await step(joined, Action.CLEAR_INTERNET_FQDN, Zone.INTERNET)
    assert obs.outcome == "ok" and obs.notes == [
        f"The Internet FQDN {INTERNET} was deleted on the client"]
    obs = await step(joined, Action.LOCATION, Zone.INTERNET)
    assert obs.failure is FailureKind.NO_INTERNET_MP
    assert obs.detail.endswith("no internet-facing MP: its Internet FQDN was deleted on the "
                               "client and no site refresh on the intranet has set it again "
                               "since")
    browser = make(SETUP, domain_joined=False)
    obs = await step(browser, Action.BROWSE_MPLIST, Zone.INTRANET)
    assert (obs.failure, obs.detail) == (FailureKind.NO_MP,
                                         "the machine knows no MP name to browse to")


async def test_https_mp_without_usepkicert(make: Make) -> None:
    client = make(f"ccmsetup.exe SMSSITECODE=P01 {HTTPS_MP}")
    client.state.installed = True
    obs = await step(client, Action.REGISTER, Zone.INTRANET)
    assert (obs.failure, obs.error) == (FailureKind.NO_PKI, codes.CCM_MP_NOT_FOUND)
    assert obs.mp == MpChoice(INTRA, True, HTTPS_MP) and obs.requests == []
    assert obs.detail == (f"{INTRA} accepts HTTPS only, and without /UsePKICert the client "
                          "filters out every HTTPS management point")


async def test_no_client_certificate_is_logged_and_nothing_is_sent(make: Make) -> None:
    client = make(f"{SETUP} {HTTPS_MP}")
    client.state.installed = True
    obs = await step(client, Action.REGISTER, Zone.INTRANET)
    assert (obs.failure, obs.error) == (FailureKind.NO_CLIENT_CERT, codes.CCM_EMPTY_CERT_STORE)
    assert obs.detail == ("the computer's Personal store holds no certificate, so the client "
                          "cannot use PKI and filters out HTTPS management points")
    assert "CCM_E_NO_CLIENT_PKI_CERT" in obs.extra_identifiers and obs.requests == []
    [line] = obs.log
    assert (line.file, line.component, line.severity) == ("CcmMessaging.log", "CcmMessaging", 3)
    assert line.text == (f"[CCMHTTP] ERROR: URL=https://{INTRA}{REQUEST_PATH}, Port=0, "
                         "Options=224, Code=0, Text=CCM_E_NO_CLIENT_PKI_CERT")
    assert client.http.client_cert is None


# -- the HTTP stack's plain parts ------------------------------------------------------------

def test_an_outcome_says_which_error_winhttp_reports() -> None:
    out = HttpOutcome("GET", f"https://{INTRA}/", INTRA, 443, True, True)
    assert (out.winhttp_error, out.flags, out.ok) == (None, 0, False)
    out.status = 200
    assert out.ok
    problem = ChainProblem(codes.CERT_E_CN_NO_MATCH, WinHttpFlag.CERT_CN_INVALID, "name", "x")
    out.verdict = ChainVerdict((), (problem,))
    assert (out.winhttp_error, out.flags, out.ok) == (codes.ERROR_WINHTTP_SECURE_FAILURE, 0x10,
                                                      False)
    out.connect_error = codes.ERROR_WINHTTP_CANNOT_CONNECT
    assert out.winhttp_error is codes.ERROR_WINHTTP_CANNOT_CONNECT


def test_openssl_verify_codes_map_to_the_engine_vocabulary() -> None:
    assert {OPENSSL_CATEGORIES[c] for c in (2, 18, 19, 20, 21)} == {"trust"}
    assert (OPENSSL_CATEGORIES[3], OPENSSL_CATEGORIES[23], OPENSSL_CATEGORIES[10],
            OPENSSL_CATEGORIES[26], OPENSSL_CATEGORIES[62]) == (
        "offline", "revoked", "date", "usage", "name")
    assert OPENSSL_CATEGORIES[0] == "ok" and 1 not in OPENSSL_CATEGORIES


def test_client_cert_files_identity_follows_the_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"cert")
    key.write_bytes(b"key")
    files = ClientCertFiles(cert, key)
    first = files.identity()
    assert first == files.identity()
    cert.write_bytes(b"a new certificate")
    os.utime(cert, ns=(1, 1))
    assert files.identity() != first
