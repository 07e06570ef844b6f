"""Tests for lab.cryptoapi: CRL retrieval per zone, the revocation verdict, CRL judgement,
name matching and the SSL policy checks.

CRLs are fetched for real: ``ldap:///`` URLs over a real LDAP connection to the lab's DC,
``http://`` URLs with a real HTTP GET from the lab's CDP server (both started by the harness).
Time-outs are simulated milliseconds, never slept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labtest import (
    HTTP_CDP,
    INTERNET,
    INTRA,
    LDAP_CDP,
    PKI_CDP,
    START,
    contoso,
    machine,
    scenario_toml,
    stage_scenario,
    zone_session,
)

from lab import codes
from lab.clock import Clock
from lab.codes import WinHttpFlag
from lab.cryptoapi.chain import build_chain, name_matches, policy_problems
from lab.cryptoapi.retrieval import RETRIEVAL_TIMEOUT_MS, Retriever
from lab.cryptoapi.revocation import RevocationResult, check_chain, judge_crl
from lab.pki.build import BuiltCA, BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab

# AD CS publishes delta CRLs by default: next to each CDP location (reference §4.4).
DELTA_LDAP = LDAP_CDP.replace("?certificateRevocationList?", "?deltaRevocationList?")
DELTA_HTTP = HTTP_CDP.replace(".crl", "+.crl")
PKI_DELTA = PKI_CDP.replace(".crl", "+.crl")


def scenario_text(*, ca_extra: str = "", mp_extra: str = "") -> str:
    return scenario_toml(title="test_revocation", cas=contoso(ca_extra),
                         mp_cert=f'issuer = "Contoso-CA"\n{mp_extra}')


async def stage(lab: RunningLab, cache: PKICache, text: str) -> Deployment:
    return await stage_scenario(lab, cache, text, name="test-revocation")


@asynccontextmanager
async def retriever(lab: RunningLab, dep: Deployment, zone: Zone, *,
                    domain_joined: bool = True) -> AsyncIterator[Retriever]:
    pc01 = machine(zone, domain_joined)
    async with zone_session(lab, dep.network, pc01) as session:
        yield Retriever(dep.network, pc01, lab.hosts, session)


def mp_chain(pki: BuiltPKI) -> list[x509.Certificate]:
    assert pki.mp is not None
    return [pki.mp.cert, pki.cas["Contoso-CA"].cert]


async def check_mp(lab: RunningLab, dep: Deployment, zone: Zone, *, domain_joined: bool = True,
                   now: dt.datetime | None = None) -> RevocationResult:
    async with retriever(lab, dep, zone, domain_joined=domain_joined) as r:
        return await check_chain(mp_chain(dep.pki), r, now or dep.clock.now())


def attempts(result: RevocationResult) -> list[tuple[str, str, str | None, int]]:
    return [(u.url, u.result, u.error.name if u.error else None, u.simulated_ms)
            for u in result.urls]


def crl_number(ca: BuiltCA) -> int:
    return ca.crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# ------------------------------------------------------------------------------------------
# The revocation walk, per zone
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [Zone.INTRANET, Zone.VPN])
async def test_domain_joined_inside_gets_the_crl_from_ldap(lab: RunningLab, cache: PKICache,
                                                           zone: Zone) -> None:
    dep = await stage(lab, cache, scenario_text())
    result = await check_mp(lab, dep, zone)
    assert (result.checked, result.status, result.error) == (True, "good", None)
    # the base CRL, then the delta CRL it names, each from the directory first
    assert attempts(result) == [
        (LDAP_CDP, "verified", None, 0),
        (HTTP_CDP, "not_tried", None, 0),
        (DELTA_LDAP, "verified", None, 0),
        (DELTA_HTTP, "not_tried", None, 0),
    ]
    assert [u.crl for u in result.urls] == ["base", "base", "delta", "delta"]
    assert result.simulated_ms == 0
    first, second, delta, _ = result.urls
    assert delta.crl_number is not None and first.crl_number is not None
    assert delta.crl_number > first.crl_number
    assert first.detail == ("a good CRL; retrieved over LDAP from DC01.contoso.local "
                            f"(127.0.0.1:{lab.ports.ldap})")
    assert first.source == ("retrieved over LDAP from DC01.contoso.local "
                            f"(127.0.0.1:{lab.ports.ldap})")
    assert first.crl_number == crl_number(dep.pki.cas["Contoso-CA"])
    assert second.detail == "not tried: an earlier URL gave a good CRL"
    ca = dep.pki.cas["Contoso-CA"]
    assert ca.delta_crl is not None
    assert [c.public_bytes(serialization.Encoding.DER) for c in result.crls] == [
        ca.crl_der, ca.delta_crl.public_bytes(serialization.Encoding.DER)]
    (element,) = result.elements
    assert dep.pki.mp is not None
    assert element.serial == dep.pki.mp.cert.serial_number
    assert element.subject == f"CN={INTRA}"
    assert element.issuer == "CN=Contoso-CA,DC=contoso,DC=local"


@pytest.mark.parametrize("zone", [Zone.INTERNET, Zone.DMZ])
async def test_outside_both_default_urls_fail_offline(lab: RunningLab, cache: PKICache,
                                                      zone: Zone) -> None:
    dep = await stage(lab, cache, scenario_text())
    result = await check_mp(lab, dep, zone)
    assert attempts(result) == [
        (LDAP_CDP, "failed", "ERROR_DS_SERVER_DOWN", 15000),
        (HTTP_CDP, "failed", "ERROR_WINHTTP_NAME_NOT_RESOLVED", 15000),
    ]
    assert RETRIEVAL_TIMEOUT_MS == 15000
    assert result.simulated_ms == 30000
    assert result.status == "offline"
    assert result.error is codes.CRYPT_E_REVOCATION_OFFLINE
    assert result.error.hex == "0x80092013"
    ldap, http = result.urls
    assert ldap.detail == ("ldap:/// needs a domain controller of the machine's own domain; "
                           f"no domain controller answers in the {zone} zone")
    assert http.detail == (f"ca01.contoso.local does not resolve from the {zone} zone "
                           "(a name in the AD domain contoso.local)")
    assert result.crls == ()


async def test_workgroup_intranet_machine_falls_back_to_http(lab: RunningLab,
                                                             cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    result = await check_mp(lab, dep, Zone.INTRANET, domain_joined=False)
    assert attempts(result) == [
        (LDAP_CDP, "failed", "ERROR_DS_SERVER_DOWN", 15000),
        (HTTP_CDP, "verified", None, 0),
        (DELTA_LDAP, "failed", "ERROR_DS_SERVER_DOWN", 15000),
        (DELTA_HTTP, "verified", None, 0),
    ]
    assert result.urls[0].detail.endswith("the machine is not domain-joined")
    assert result.status == "good"
    assert result.simulated_ms == 30000


async def test_internet_reaches_a_public_http_cdp_after_the_ldap_timeout(
        lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(ca_extra=f'cdp = ["ldap", "{PKI_CDP}"]'))
    result = await check_mp(lab, dep, Zone.INTERNET)
    assert attempts(result) == [
        (LDAP_CDP, "failed", "ERROR_DS_SERVER_DOWN", 15000),
        (PKI_CDP, "verified", None, 0),
        (DELTA_LDAP, "failed", "ERROR_DS_SERVER_DOWN", 15000),
        (PKI_DELTA, "verified", None, 0),
    ]
    assert result.status == "good" and result.error is None
    assert result.simulated_ms == 30000
    assert result.urls[1].crl_number == crl_number(dep.pki.cas["Contoso-CA"])
    ca = dep.pki.cas["Contoso-CA"]
    assert ca.delta_crl is not None
    assert [c.public_bytes(serialization.Encoding.DER) for c in result.crls] == [
        ca.crl_der, ca.delta_crl.public_bytes(serialization.Encoding.DER)]


@pytest.mark.parametrize(("revoked", "status", "error"), [
    (True, "revoked", codes.CRYPT_E_REVOKED),
    (False, "good", None),
])
async def test_revoked_mp_cert(lab: RunningLab, cache: PKICache, revoked: bool, status: str,
                               error: codes.Code | None) -> None:
    dep = await stage(lab, cache, scenario_text(mp_extra=f"revoked = {str(revoked).lower()}"))
    result = await check_mp(lab, dep, Zone.INTRANET)
    assert (result.status, result.error) == (status, error)
    assert result.elements[0].status == status
    assert attempts(result)[0] == (LDAP_CDP, "verified", None, 0)
    if revoked:
        assert result.error is not None and result.error.hex == "0x80092010"


async def test_certificate_without_cdp_cannot_be_checked(lab: RunningLab,
                                                         cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(mp_extra="cdp = []"))
    result = await check_mp(lab, dep, Zone.INTRANET)
    assert result.status == "no_check"
    assert result.error is codes.CRYPT_E_NO_REVOCATION_CHECK
    assert result.error.hex == "0x80092012"
    assert result.urls == ()
    assert result.elements[0].status == "no_check"
    assert result.simulated_ms == 0


async def test_expired_crl_from_the_cdp_is_offline_not_revoked(lab: RunningLab,
                                                               cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(mp_extra="revoked = true"))
    crl = dep.pki.cas["Contoso-CA"].crl
    assert crl.next_update_utc is not None
    later = crl.next_update_utc + dt.timedelta(hours=1)
    result = await check_mp(lab, dep, Zone.INTRANET, now=later)
    # Both URLs hand back the (now stale) CRL; neither is good.
    assert [(u.url, u.result) for u in result.urls] == [
        (LDAP_CDP, "expired"), (HTTP_CDP, "expired")]
    assert result.status == "offline"
    assert result.error is codes.CRYPT_E_REVOCATION_OFFLINE
    assert len(result.crls) == 2
    # Twin: the same revoked certificate before nextUpdate.
    assert (await check_mp(lab, dep, Zone.INTRANET)).status == "revoked"


# ------------------------------------------------------------------------------------------
# judge_crl
# ------------------------------------------------------------------------------------------


def sign_crl(ca: BuiltCA, *, this_update: dt.datetime, next_update: dt.datetime,
             key: ec.EllipticCurvePrivateKey | None = None,
             issuer: x509.Name | None = None) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer or ca.cert.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(7), critical=False))
    crl = builder.sign(key or ca.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def pki(cache: PKICache) -> BuiltPKI:
    return build_pki(load_scenario_text(scenario_text(), name="judge"), Clock(START), cache)


def test_judge_crl_expired(pki: BuiltPKI) -> None:
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    now = START
    data = sign_crl(ca, this_update=now - dt.timedelta(days=8),
                    next_update=now - dt.timedelta(days=1))
    result, detail, crl = judge_crl(data, pki.mp.cert, ca.cert, now)
    assert result == "expired"
    expected_next = now - dt.timedelta(days=1)
    assert detail == f"nextUpdate {expected_next:%Y-%m-%d %H:%M} has passed"
    assert crl is not None and crl.next_update_utc == expected_next
    # Twin: the same CA key and name with a nextUpdate ahead.
    fresh = sign_crl(ca, this_update=now - dt.timedelta(hours=1),
                     next_update=now + dt.timedelta(days=1))
    assert judge_crl(fresh, pki.mp.cert, ca.cert, now)[:2] == ("verified", "a good CRL")
    assert judge_crl(ca.crl_der, pki.mp.cert, ca.cert, now)[0] == "verified"


def test_judge_crl_not_yet_valid(pki: BuiltPKI) -> None:
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    future = START + dt.timedelta(days=2)
    data = sign_crl(ca, this_update=future, next_update=future + dt.timedelta(days=7))
    result, detail, _ = judge_crl(data, pki.mp.cert, ca.cert, START)
    assert result == "not_yet_valid"
    assert detail == f"thisUpdate {future:%Y-%m-%d %H:%M} is in the future"


def test_judge_crl_signed_by_another_key_is_invalid(pki: BuiltPKI) -> None:
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    impostor = ec.generate_private_key(ec.SECP256R1())
    data = sign_crl(ca, this_update=START - dt.timedelta(hours=1),
                    next_update=START + dt.timedelta(days=1), key=impostor)
    assert x509.load_der_x509_crl(data).issuer == ca.cert.subject  # same name, wrong key
    result, detail, crl = judge_crl(data, pki.mp.cert, ca.cert, START)
    assert result == "invalid"
    assert detail == "the CRL's signature does not verify with the issuer's key"
    assert crl is not None


def test_judge_crl_other_issuer_and_garbage_are_invalid(pki: BuiltPKI) -> None:
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other-CA")])
    data = sign_crl(ca, this_update=START - dt.timedelta(hours=1),
                    next_update=START + dt.timedelta(days=1), issuer=other)
    assert judge_crl(data, pki.mp.cert, ca.cert, START)[:2] == (
        "invalid", "the CRL was issued by another CA")
    assert judge_crl(b"<html>404</html>", pki.mp.cert, ca.cert, START) == (
        "invalid", "the response is not a CRL", None)
    # A PEM CRL is accepted as well as DER.
    pem = x509.load_der_x509_crl(ca.crl_der).public_bytes(serialization.Encoding.PEM)
    assert judge_crl(pem, pki.mp.cert, ca.cert, START)[0] == "verified"


# ------------------------------------------------------------------------------------------
# Name matching and the SSL policy
# ------------------------------------------------------------------------------------------


def small_cert(san: list[str] | None, cn: str = "server.contoso.local") -> x509.Certificate:
    """A real, self-signed EC certificate (cheap to make) with the given SAN DNS names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(START - dt.timedelta(days=1))
               .not_valid_after(START + dt.timedelta(days=30)))
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def wildcard_cert() -> x509.Certificate:
    return small_cert([INTRA, "*.public.com"], cn="not-in-san.contoso.local")


@pytest.mark.parametrize(("host", "expected"), [
    (INTRA, True),                          # exact
    ("ibcm-intra.CONTOSO.LOCAL", True),     # case-insensitive
    ("ibcm-intra.contoso.local.", True),    # root dot
    (INTERNET, True),                       # wildcard, one label
    ("mp.public.com", True),
    ("a.b.public.com", False),              # wildcard covers one label only
    ("public.com", False),                  # ... and not the bare domain
    ("ibcm-intra.contoso.local.evil", False),
    ("other.contoso.local", False),         # no match
    ("not-in-san.contoso.local", False),    # the CN is ignored when there is a SAN
])
def test_name_matches(wildcard_cert: x509.Certificate, host: str, expected: bool) -> None:
    assert name_matches(host, wildcard_cert) is expected


def test_name_matches_falls_back_to_the_cn_without_san() -> None:
    cert = small_cert(None, cn="legacy.contoso.local")
    assert name_matches("LEGACY.contoso.local", cert) is True
    assert name_matches("other.contoso.local", cert) is False


def test_name_matches_the_real_mp_certificate(pki: BuiltPKI) -> None:
    assert pki.mp is not None
    assert name_matches(INTRA, pki.mp.cert) and name_matches(INTERNET, pki.mp.cert)
    assert not name_matches("IBCM-Other.public.com", pki.mp.cert)


def test_policy_untrusted_root(pki: BuiltPKI) -> None:
    assert pki.mp is not None
    ca = pki.cas["Contoso-CA"].cert
    # The root arrives (through AIA, say) but is not in the machine's root store.
    chain, trusted = build_chain(pki.mp.cert, anchors=[], pool=[ca])
    assert chain == [pki.mp.cert, ca] and trusted is False
    problems = policy_problems(chain, trusted, now=START, host=INTERNET,
                               usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert [(p.error, p.flag, p.category) for p in problems] == [
        (codes.CERT_E_UNTRUSTEDROOT, WinHttpFlag.INVALID_CA, "trust")]
    assert problems[0].error.hex == "0x800B0109"
    assert problems[0].detail == (
        "the chain ends in CN=Contoso-CA,DC=contoso,DC=local, which is not in the machine's "
        "Trusted Root Certification Authorities store")
    # Twin: the same chain with the root trusted has no problem at all.
    chain, trusted = build_chain(pki.mp.cert, anchors=[ca])
    assert chain == [pki.mp.cert, ca] and trusted is True
    assert policy_problems(chain, trusted, now=START, host=INTERNET,
                           usage=ExtendedKeyUsageOID.SERVER_AUTH) == []


def test_policy_missing_issuer_is_a_chaining_error(pki: BuiltPKI) -> None:
    assert pki.mp is not None
    chain, trusted = build_chain(pki.mp.cert, anchors=[])
    assert chain == [pki.mp.cert] and trusted is False
    problems = policy_problems(chain, trusted, now=START, host=INTRA,
                               usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert [(p.error, p.flag) for p in problems] == [
        (codes.CERT_E_CHAINING, WinHttpFlag.INVALID_CA)]


def test_policy_name_and_usage_problems_with_twins(pki: BuiltPKI) -> None:
    assert pki.mp is not None
    ca = pki.cas["Contoso-CA"].cert
    chain, trusted = build_chain(pki.mp.cert, anchors=[ca])
    wrong_name = policy_problems(chain, trusted, now=START, host="IBCM-Other.public.com",
                                 usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert [(p.error, p.flag) for p in wrong_name] == [
        (codes.CERT_E_CN_NO_MATCH, WinHttpFlag.CERT_CN_INVALID)]
    assert wrong_name[0].detail == (
        f"the client asked for IBCM-Other.public.com, the certificate names {INTRA}, {INTERNET}")
    # A client-auth certificate offered as a server certificate: wrong usage.
    client = pki.clients["PC01"].cert
    chain, trusted = build_chain(client, anchors=[ca])
    wrong_usage = policy_problems(chain, trusted, now=START, host=None,
                                  usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert [(p.error, p.flag) for p in wrong_usage] == [
        (codes.CERT_E_WRONG_USAGE, WinHttpFlag.CERT_WRONG_USAGE)]
    assert policy_problems(chain, trusted, now=START, host=None,
                           usage=ExtendedKeyUsageOID.CLIENT_AUTH) == []


