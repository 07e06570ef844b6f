"""Functional tests of the lab's servers over real sockets on 127.0.0.1.

The mock MP is reached over real mutual TLS (the client trusts the lab's roots, verifies the
MP's name, and presents a lab client certificate); the CDP/AIA server over real HTTP. Every
refusal has a passing twin, and no response body may ever carry a private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import socket
import ssl
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labtest import (
    HTTP_AIA,
    HTTP_CDP,
    INTERNET,
    INTRA,
    PKI_CDP,
    PUBLIC_AIA,
    PUBLIC_CDP,
    START,
    client_table,
    contoso,
    fabrikam,
    machine,
    scenario_toml,
    site_table,
    stage_scenario,
    zone_session,
)

from lab import codes
from lab.clock import Clock, system_now
from lab.pki.build import BuiltPKI, IssuedCert
from lab.pki.cache import PKICache
from lab.protocols.network import LOOPBACK
from lab.results.records import MpRecord
from lab.scenario.model import Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab

REGISTRATION_ID = "GUID:8E8B5B8D-3C3A-4B7E-9A55-0F4B1C2D3E4F"


def client(name: str, cert: str = "") -> str:
    """A client that registers from the intranet."""
    return client_table(name, cert, action="register")


# PC01: a good client certificate; PC02: revoked; PC03: issued by the public CA.
CLIENTS = (client("PC01")
           + client("PC02", '[client.cert]\nissuer = "Contoso-CA"\nrevoked = true\n')
           + client("PC03", '[client.cert]\nissuer = "Fabrikam Public CA"\n'))


def scenario_text(*, check_crl: bool = True, https_only: bool = True,
                  trusted_roots: str = "", contoso_extra: str = "", fabrikam_extra: str = "",
                  internet: bool = True, mp_cert: str = 'issuer = "Contoso-CA"',
                  network: str = "", clients: str = CLIENTS) -> str:
    site = site_table(f"check_crl = {str(check_crl).lower()}\n"
                      f"https_only = {str(https_only).lower()}\n{trusted_roots}")
    return scenario_toml(title="test_servers", site=site,
                         cas=contoso(contoso_extra) + fabrikam(fabrikam_extra),
                         mp_cert=mp_cert, internet=internet, network=network, clients=clients)


async def stage(lab: RunningLab, cache: PKICache, text: str) -> Deployment:
    return await stage_scenario(lab, cache, text, name="test-servers")


# ------------------------------------------------------------------------------------------
# A hand-written HTTP/1.1 client over real sockets
# ------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case header names."""
    body: bytes
    peer_der: bytes | None = None


def parse_reply(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _version, status, reason = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        assert len(body) == int(headers["content-length"])
    assert b"PRIVATE KEY" not in data
    return Reply(int(status), reason, headers, body)


def tls_context(pki: BuiltPKI, cert: IssuedCert | None) -> ssl.SSLContext:
    """What a Windows client holds: the lab's roots, and its client certificate."""
    ctx = ssl.create_default_context(cadata=pki.trust_pem().decode())
    if cert is not None:
        ctx.load_cert_chain(cert.chain_path, cert.key_path)
    return ctx


async def exchange(port: int, request: bytes, *, ssl_context: ssl.SSLContext | None = None,
                   server_hostname: str | None = None) -> Reply:
    reader, writer = await asyncio.open_connection(
        LOOPBACK, port, ssl=ssl_context, server_hostname=server_hostname)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        peer = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        writer.write(request)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    reply = parse_reply(data)
    reply.peer_der = peer
    return reply


def http_request(method: str, target: str, host: str, *, body: bytes = b"",
                 step: str | None = None) -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: ccmhttp-lab-test\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n")
    if step is not None:
        head += f"X-Lab-Step: {step}\r\n"
    return (head + "\r\n").encode("ascii") + body


async def mp_https(lab: RunningLab, pki: BuiltPKI, fqdn: str, method: str, target: str, *,
                   cert: IssuedCert | None, body: bytes = b"", step: str | None = None) -> Reply:
    port = lab.hosts.get(fqdn, 443)
    assert port is not None, f"{fqdn}:443 is not mapped"
    return await exchange(port, http_request(method, target, fqdn, body=body, step=step),
                          ssl_context=tls_context(pki, cert), server_hostname=fqdn)


def new_step() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def only_record(lab: RunningLab, step: str) -> MpRecord:
    records = lab.mp_records(step)
    assert len(records) == 1, records
    return records[0]


def verdict(record: MpRecord) -> tuple[int, int, int]:
    return record.status, record.substatus, record.win32_status


def intranet_session(lab: RunningLab, deployment: Deployment, *,
                     zone: Zone = Zone.INTRANET) -> aiohttp.ClientSession:
    return zone_session(lab, deployment.network, machine(zone))


def mplist_state(body: bytes) -> tuple[ET.Element, str]:
    root = ET.fromstring(body)
    assert root.tag == "MPList"
    mps = root.findall("MP")
    assert len(mps) == 1
    prop = mps[0].find("Capabilities/Property[@Name='SSLState']")
    assert prop is not None
    return mps[0], prop.attrib["Value"]


# ------------------------------------------------------------------------------------------
# The MP over mutual TLS
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("check_crl", "ssl_state"), [(True, "63"), (False, "31")])
async def test_mplist_over_mutual_tls(lab: RunningLab, cache: PKICache, check_crl: bool,
                                      ssl_state: str) -> None:
    dep = await stage(lab, cache, scenario_text(check_crl=check_crl))
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTERNET, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    mp, value = mplist_state(reply.body)
    assert mp.attrib == {"Name": INTRA.upper(), "FQDN": INTRA}
    assert mp.findtext("Version") == "9128"
    assert value == ssl_state
    assert value == str(codes.https_state(True, check_crl))
    record = only_record(lab, step)
    assert verdict(record) == (200, 0, 0)
    assert (record.method, record.uri_stem, record.uri_query, record.port) == (
        "GET", "/SMS_MP/.sms_aut", "MPLIST", 443)
    assert record.host == INTERNET
    assert record.user_agent == "ccmhttp-lab-test"
    assert record.time == START


async def test_mplist_through_aiohttp_and_the_zone_resolver(lab: RunningLab,
                                                             cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    ctx = tls_context(dep.pki, dep.pki.clients["PC01"])
    async with intranet_session(lab, dep, zone=Zone.INTERNET) as session:
        url = f"https://{INTERNET}/sms_mp/.sms_aut?mplist"  # admins type it in lower case
        async with session.get(url, ssl=ctx) as resp:
            body = await resp.read()
            assert resp.status == 200
        assert mplist_state(body)[1] == "63"
        # Twin: from the internet the intranet name does not resolve.
        refused = f"[{INTRA.lower()} does not resolve from the internet zone]"
        with pytest.raises(aiohttp.ClientConnectorDNSError, match=re.escape(refused)):
            await session.get(f"https://{INTRA}/SMS_MP/.sms_aut?MPLIST", ssl=ctx)


async def test_mpcert_returns_the_mp_certificate_hex_der(lab: RunningLab,
                                                         cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    mp = dep.pki.mp
    assert mp is not None
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPCERT",
                           cert=dep.pki.clients["PC01"])
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    assert root.tag == "MPCERT"
    element = root.find("Certificate")
    assert element is not None and element.text is not None
    assert element.attrib["Thumbprint"] == mp.thumbprint
    assert element.text == mp.der.hex().upper()
    assert bytes.fromhex(element.text) == mp.der == reply.peer_der
    # Twin: an unknown .sms_aut query is a 400, not the certificate.
    bad = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPNOTHING",
                         cert=dep.pki.clients["PC01"])
    assert (bad.status, bad.body) == (400, b"Bad Request")


async def test_ccm_post_registration_echoes_the_client_id(lab: RunningLab,
                                                          cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    pc01 = dep.pki.clients["PC01"]
    body = (f"<Msg><TargetEndpoint>MP_ClientRegistration</TargetEndpoint>"
            f"<ClientID>{REGISTRATION_ID}</ClientID></Msg>").encode()
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTERNET, "CCM_POST", "/ccm_system/request",
                           cert=pc01, body=body, step=step)
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    assert root.tag == "ClientRegistrationReply"
    assert root.attrib == {"ClientID": REGISTRATION_ID, "ApprovalStatus": "1"}
    record = only_record(lab, step)
    assert (record.method, record.uri_stem, verdict(record)) == (
        "CCM_POST", "/ccm_system/request", (200, 0, 0))

    # Without a ClientID the MP derives one from the client certificate.
    anonymous = b"<Msg><TargetEndpoint>MP_ClientRegistration</TargetEndpoint></Msg>"
    reply = await mp_https(lab, dep.pki, INTRA, "CCM_POST", "/ccm_system/request",
                           cert=pc01, body=anonymous)
    seed = pc01.cert.fingerprint(hashes.SHA256()).hex()
    expected = f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, 'ibcm-lab:' + seed)).upper()}"
    assert ET.fromstring(reply.body).attrib["ClientID"] == expected

    # Twins that must not register: an unknown endpoint, and the wrong verb.
    unknown = b"<Msg><TargetEndpoint>MP_Nothing</TargetEndpoint></Msg>"
    reply = await mp_https(lab, dep.pki, INTRA, "CCM_POST", "/ccm_system/request",
                           cert=pc01, body=unknown)
    assert (reply.status, reply.body) == (400, b"unknown target endpoint")
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "POST", "/ccm_system/request",
                           cert=pc01, body=body, step=step)
    assert reply.status == 405
    assert only_record(lab, step).detail == "POST is not CCM_POST"


async def test_sni_picks_the_staged_mp_certificate(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    mp = dep.pki.mp
    assert mp is not None
    for fqdn in (INTRA, INTERNET):
        # tls_context verifies the chain and that the certificate names fqdn.
        reply = await mp_https(lab, dep.pki, fqdn, "GET", "/SMS_MP/.sms_aut?MPLIST",
                               cert=dep.pki.clients["PC01"])
        assert reply.status == 200
        assert reply.peer_der == mp.der
    # Twin: a name the MP does not carry gets the placeholder, not the MP certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    port = lab.ports.mp_https
    for name in ("unknown.example", None):
        _reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=ctx,
                                                        server_hostname=name)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        peer = x509.load_der_x509_certificate(der)
        assert peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            "ibcm-lab: no certificate bound")


def _mplist_on_new_connection(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None,
                              step: str) -> tuple[Reply, bool, ssl.SSLSession | None]:
    """One MPLIST request on a new connection that offers ``session`` (blocking: asyncio has
    no way to offer one); the reply, whether the session was resumed, and the session."""
    with socket.create_connection((LOOPBACK, port)) as raw, \
            ctx.wrap_socket(raw, server_hostname=INTRA, session=session) as tls:
        tls.sendall(http_request("GET", "/SMS_MP/.sms_aut?MPLIST", INTRA, step=step))
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return parse_reply(b"".join(chunks)), tls.session_reused, tls.session


async def test_a_resumed_session_comes_from_the_mp_cache_and_is_judged_again(
        lab: RunningLab, cache: PKICache) -> None:
    """A client's second connection resumes its TLS session from the MP's server-side cache
    (SChannel's ServerCacheTime cache, not a stateless ticket), and IIS judges the
    certificate the session carries as on the full handshake: PC01 200, revoked PC02 403.13."""
    dep = await stage(lab, cache, scenario_text())
    port = lab.hosts.get(INTRA, 443)
    assert port is not None
    for name, expected in (("PC01", (200, 0, 0)), ("PC02", (403, 13, 0x80092010))):
        ctx = tls_context(dep.pki, dep.pki.clients[name])
        before = lab.tls_session_stats()
        session: ssl.SSLSession | None = None
        reused, verdicts = [], []
        for _ in range(2):
            step = new_step()
            reply, resumed, session = await asyncio.to_thread(
                _mplist_on_new_connection, port, ctx, session, step)
            assert reply.status == expected[0]
            reused.append(resumed)
            verdicts.append(verdict(only_record(lab, step)))
        after = lab.tls_session_stats()
        assert reused == [False, True], name
        assert verdicts == [expected, expected], name
        # From the server's cache: each handshake stored a session, the second hit one.
        assert after["hits"] - before["hits"] == 1
        assert after["number"] > before["number"]


async def test_no_client_cert_is_403_7(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=None, step=step)
    assert (reply.status, reply.reason) == (403, "Forbidden")
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert b"<h1>403 - Forbidden: Access is denied.</h1>" in reply.body
    assert b"<h2>Client certificate required</h2>" in reply.body
    assert b"MPList" not in reply.body
    record = only_record(lab, step)
    assert verdict(record) == (403, 7, 0)
    assert record.detail == "the request carried no client certificate"
    # Twin: the same request with a good client certificate.
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 200
    assert verdict(only_record(lab, step)) == (200, 0, 0)


async def test_client_cert_outside_site_trusted_roots_is_403_16(lab: RunningLab,
                                                                cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(trusted_roots='trusted_roots = ["Contoso-CA"]'))
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC03"], step=step)
    assert reply.status == 403
    assert b"<h2>Client certificate is untrusted or invalid</h2>" in reply.body
    record = only_record(lab, step)
    assert verdict(record) == (403, 16, 2148204809)
    assert codes.CERT_E_UNTRUSTEDROOT.hresult == 2148204809
    assert record.detail == ("CN=PC03.contoso.local does not chain to a root in the site's "
                             "trusted root list")
    # Twin in the same site: a certificate from the trusted root.
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 200
    assert verdict(only_record(lab, step)) == (200, 0, 0)


async def test_public_ca_client_cert_accepted_when_every_root_is_trusted(
        lab: RunningLab, cache: PKICache) -> None:
    # Twin of the 403.16 case: no trusted_roots list, and the MP fetches the public CA's
    # CRL over real HTTP from the CDP server.
    dep = await stage(lab, cache, scenario_text())
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC03"], step=step)
    assert reply.status == 200
    record = only_record(lab, step)
    assert verdict(record) == (200, 0, 0)


async def test_revoked_client_cert_is_403_13(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text())
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC02"], step=step)
    assert reply.status == 403
    assert b"<h2>Client certificate revoked</h2>" in reply.body
    record = only_record(lab, step)
    assert verdict(record) == (403, 13, codes.CRYPT_E_REVOKED.hresult)
    assert record.win32_status == 0x80092010
    # Workstation Authentication leaves the subject empty: the SAN names the certificate.
    assert record.detail == "(empty subject, DNS:PC02.contoso.local) is on its issuer's CRL"
    # Twin: a good certificate from the same CA.
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 200
    assert verdict(only_record(lab, step)) == (200, 0, 0)


async def test_expired_client_cert_is_403_17_by_the_lab_clock(lab: RunningLab,
                                                              cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(clients=client("PC01")))
    # IIS judges dates with the lab clock (OpenSSL's own date check is off): the same
    # certificate, 400 days later.
    late = Deployment(scenario=dep.scenario, pki=dep.pki, network=dep.network,
                      clock=Clock(START + dt.timedelta(days=400)))
    await lab.stage(late)
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 403
    assert b"<h2>Client certificate has expired or is not yet valid</h2>" in reply.body
    record = only_record(lab, step)
    assert verdict(record) == (403, 17, codes.CERT_E_EXPIRED.hresult)
    assert record.win32_status == 0x800B0101
    assert record.detail == ("(empty subject, DNS:PC01.contoso.local) is outside its "
                             "validity period")
    # Twin: staged again at the certificate's own time.
    await lab.stage(dep)
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    assert reply.status == 200
    assert verdict(only_record(lab, step)) == (200, 0, 0)


def foreign_client_cert(folder: Path) -> Path:
    """A client certificate from a root that is no lab CA (real EC keys, cheap to make)."""
    now = system_now()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Root CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        "PC09.contoso.local")]))
            .issuer_name(root_name).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    path = folder / "foreign-client.pem"
    path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.chmod(0o600)
    return path


@pytest.mark.xfail(strict=True, reason=(
    "Known limitation (docs/scenario-format.md, 'The MP's side'): Python's ssl module can "
    "only request a client certificate by also verifying it, so the MP's context trusts "
    "every lab root and a certificate from a root outside the lab aborts the handshake, "
    "where IIS answers 403.16 (sc-win32-status 2148204809, reference §8.3). Scenarios cannot "
    "produce such a certificate; lab roots missing from [site] trusted_roots do get 403.16."))
async def test_client_cert_from_a_foreign_root_is_403_16(lab: RunningLab, cache: PKICache,
                                                         tmp_path: Path) -> None:
    dep = await stage(lab, cache, scenario_text(clients=client("PC01")))
    ctx = tls_context(dep.pki, None)
    ctx.load_cert_chain(foreign_client_cert(tmp_path))
    step = new_step()
    reply: Reply | None = None
    with contextlib.suppress(ssl.SSLError, ConnectionError, ValueError):
        reply = await exchange(lab.ports.mp_https,
                               http_request("GET", "/SMS_MP/.sms_aut?MPLIST", INTRA, step=step),
                               ssl_context=ctx, server_hostname=INTRA)
    assert reply is not None, "the MP gave no HTTP answer (TLS handshake aborted)"
    assert reply.status == 403
    assert verdict(only_record(lab, step)) == (403, 16, 2148204809)


@pytest.mark.parametrize(("ldap_zones", "expected"), [
    ("[]", (403, 13, codes.CRYPT_E_REVOCATION_OFFLINE.hresult)),
    ('["intranet"]', (200, 0, 0)),
], ids=["mp-reaches-no-dc", "mp-reaches-dc"])
async def test_mp_that_cannot_fetch_the_crl_answers_403_13(
        lab: RunningLab, cache: PKICache, ldap_zones: str,
        expected: tuple[int, int, int]) -> None:
    # Client certificates with an LDAP-only CDP: IIS must reach a DC to check them.
    dep = await stage(lab, cache, scenario_text(
        contoso_extra='cdp = ["ldap"]', network=f'[network.reachable]\n"ldap:///" = {ldap_zones}',
        clients=client("PC01")))
    step = new_step()
    reply = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=dep.pki.clients["PC01"], step=step)
    record = only_record(lab, step)
    assert (reply.status, verdict(record)) == (expected[0], expected)
    if expected[0] == 403:
        assert ("IIS could not retrieve a CRL for (empty subject, DNS:PC01.contoso.local)"
                in record.detail)
        assert "no domain controller answers in the intranet zone" in record.detail


# ------------------------------------------------------------------------------------------
# The MP's HTTP site
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("https_only", [True, False])
async def test_http_site_requires_ssl_on_an_https_only_mp(lab: RunningLab, cache: PKICache,
                                                          https_only: bool) -> None:
    dep = await stage(lab, cache, scenario_text(https_only=https_only))
    port = lab.hosts.get(INTRA, 80)
    assert port == lab.ports.mp_http
    step = new_step()
    reply = await exchange(port, http_request("GET", "/SMS_MP/.sms_aut?MPLIST", INTRA,
                                              step=step))
    record = only_record(lab, step)
    assert record.port == 80
    if https_only:
        assert reply.status == 403
        assert b"<h2>SSL required</h2>" in reply.body
        assert verdict(record) == (403, 4, 0)
        assert record.detail == "the MP is HTTPS only; IIS requires SSL"
    else:
        assert reply.status == 200
        assert mplist_state(reply.body)[1] == "224"  # 0xC0 | 0x20: HTTP or HTTPS, CRL check
        assert verdict(record) == (200, 0, 0)
    assert dep.scenario.site.https_only is https_only


async def test_every_mp_answer_says_microsoft_iis(lab: RunningLab, cache: PKICache) -> None:
    # IIS names itself in every answer, its refusals included; aiohttp would say
    # "Python/3.x aiohttp/3.x".
    dep = await stage(lab, cache, scenario_text())
    good = dep.pki.clients["PC01"]
    answers = {
        "200": await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST", cert=good),
        "403.7": await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                                cert=None),
        "403.13": await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                                 cert=dep.pki.clients["PC02"]),
        "404": await mp_https(lab, dep.pki, INTRA, "GET", "/nothing/here", cert=good),
        "405": await mp_https(lab, dep.pki, INTRA, "GET", "/ccm_system/request", cert=good),
        "403.4": await exchange(lab.ports.mp_http,
                                http_request("GET", "/SMS_MP/.sms_aut?MPLIST", INTRA)),
    }
    await stage(lab, cache, scenario_text() + "\n[faults]\nmp_status = 500\n")
    answers["500"] = await mp_https(lab, dep.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                                    cert=good)
    assert {k: r.status for k, r in answers.items()} == {
        "200": 200, "403.7": 403, "403.13": 403, "404": 404, "405": 405, "403.4": 403,
        "500": 500}
    assert {k: r.headers.get("server") for k, r in answers.items()} == {
        k: "Microsoft-IIS/10.0" for k in answers}


async def test_mp_refused_by_its_ca_has_no_https_binding(lab: RunningLab,
                                                         cache: PKICache) -> None:
    dep = await stage(lab, cache, scenario_text(
        fabrikam_extra="max_names = 1", mp_cert='issuer = "Fabrikam Public CA"',
        clients=client("PC01")))
    assert dep.pki.mp is None and dep.pki.mp_refusal is not None
    assert lab.hosts.get(INTRA, 443) is None
    assert lab.hosts.get(INTERNET, 443) is None
    assert lab.mp_state.contexts == {}
    # Twin: the HTTP binding is still there (and still refuses plain HTTP).
    assert lab.hosts.get(INTRA, 80) == lab.ports.mp_http
    reply = await exchange(lab.ports.mp_http,
                           http_request("GET", "/SMS_MP/.sms_aut?MPLIST", INTRA))
    assert reply.status == 403


# ------------------------------------------------------------------------------------------
# The CDP/AIA server
# ------------------------------------------------------------------------------------------


CDP_SCENARIO = scenario_text(
    contoso_extra=f'cdp = ["ldap", "http", "{PKI_CDP}"]',
    mp_cert='issuer = "Contoso-CA"\ncdp = ["http://crl.example.net/CertEnroll/mp.crl"]',
    clients=client("PC01") + client("PC03", '[client.cert]\nissuer = "Fabrikam Public CA"\n'))


async def test_cdp_serves_every_published_url_with_exact_der(lab: RunningLab,
                                                             cache: PKICache) -> None:
    dep = await stage(lab, cache, CDP_SCENARIO)
    pki = dep.pki
    http_pubs = [p for p in pki.publications if p.url.startswith("http://")]
    # the delta CRLs next to both HTTP CDP locations (AD CS's default), served with their '+'
    # (double escaping allowed: the default)
    delta_http, delta_pki = (u.replace(".crl", "+.crl") for u in (HTTP_CDP, PKI_CDP))
    assert [p.url for p in http_pubs] == [
        HTTP_CDP, PKI_CDP, delta_http, delta_pki, HTTP_AIA, PUBLIC_CDP, PUBLIC_AIA,
        "http://crl.example.net/CertEnroll/mp.crl"]
    delta = pki.cas["Contoso-CA"].delta_crl
    assert delta is not None
    async with intranet_session(lab, dep) as session:
        for pub in http_pubs:
            ca = pki.cas[pub.ca]
            expected = ca.crl_der if pub.kind == "crl" else ca.cert_der
            if pub.url in (delta_http, delta_pki):
                expected = delta.public_bytes(serialization.Encoding.DER)
            async with session.get(pub.url) as resp:
                body = await resp.read()
                assert resp.status == 200, pub.url
                assert resp.headers["Content-Type"] == (
                    "application/pkix-crl" if pub.kind == "crl" else "application/pkix-cert")
            assert body == expected, pub.url
            assert b"PRIVATE KEY" not in body
    assert x509.load_der_x509_crl(pki.cas["Contoso-CA"].crl_der).issuer == (
        pki.cas["Contoso-CA"].cert.subject)


async def test_cdp_serves_a_percent_encoded_ca_name(lab: RunningLab, cache: PKICache) -> None:
    text = scenario_text(clients=client("PC01")).replace(
        '"Contoso-CA"', '"Contoso Issuing CA"')
    dep = await stage(lab, cache, text)
    ca = dep.pki.cas["Contoso Issuing CA"]
    async with intranet_session(lab, dep) as session:
        for url, expected in [
            ("http://ca01.contoso.local/CertEnroll/Contoso%20Issuing%20CA.crl", ca.crl_der),
            ("http://ca01.contoso.local/CertEnroll/ca01.contoso.local_Contoso%20Issuing%20CA.crt",
             ca.cert_der),
        ]:
            async with session.get(url) as resp:
                assert resp.status == 200, url
                assert await resp.read() == expected


async def test_cdp_404_for_unpublished_paths_and_hosts(lab: RunningLab,
                                                       cache: PKICache) -> None:
    await stage(lab, cache, CDP_SCENARIO)
    port = lab.ports.cdp
    assert lab.hosts.get("ca01.contoso.local", 80) == port
    published = await exchange(port, http_request("GET", "/CertEnroll/Contoso-CA.crl",
                                                  "ca01.contoso.local"))
    assert published.status == 200
    assert published.headers["content-type"] == "application/pkix-crl"
    for target, host in [
        ("/CertEnroll/Other-CA.crl", "ca01.contoso.local"),
        ("/CertEnroll/", "ca01.contoso.local"),
        ("/", "ca01.contoso.local"),
        # The right path on a host that does not publish it.
        ("/CertEnroll/Contoso-CA.crl", "crl.fabrikam-trust.example"),
        ("/CertEnroll/Contoso-CA.crl", "www.example.org"),
        # The right host and path on another port.
        ("/CertEnroll/Contoso-CA.crl", "ca01.contoso.local:8080"),
    ]:
        reply = await exchange(port, http_request("GET", target, host))
        assert (reply.status, reply.body) == (404, b"Not Found"), (target, host)


async def test_cdp_never_serves_keys(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, CDP_SCENARIO)
    assert dep.pki.mp is not None
    mp_key = dep.pki.mp.key_path
    ca_key = cache.key_path("ca-Contoso-CA-ca01.contoso.local")
    assert ca_key.exists() and b"PRIVATE KEY" in ca_key.read_bytes()
    port = lab.ports.cdp
    targets = [
        f"/CertEnroll/../keys/{mp_key.name}",
        f"/CertEnroll/../../keys/{ca_key.name}",
        f"/CertEnroll/%2e%2e/keys/{mp_key.name}",
        f"/CertEnroll/..%2Fkeys%2F{mp_key.name}",
        f"/keys/{mp_key.name}",
        f"/CertEnroll/{mp_key.name}",
        f"/CertEnroll/{ca_key.name}",
        f"/{ca_key.name}",
        str(ca_key),
        f"/CertEnroll/../../../../../../..{ca_key}",
    ]
    for target in targets:
        reply = await exchange(port, http_request("GET", target, "ca01.contoso.local"))
        assert reply.status == 404, target
        assert b"PRIVATE KEY" not in reply.body
    # Twin: the published CRL next to them is served.
    reply = await exchange(port, http_request("GET", "/CertEnroll/Contoso-CA.crl",
                                              "ca01.contoso.local"))
    assert reply.status == 200


async def test_cdp_refuses_post(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache, CDP_SCENARIO)
    async with intranet_session(lab, dep) as session:
        async with session.post(HTTP_CDP, data=b"x") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET, HEAD"
            assert await resp.read() == b"Method Not Allowed"
        # Twins: GET and HEAD are allowed.
        async with session.head(HTTP_CDP) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/pkix-crl"
        async with session.get(HTTP_CDP) as resp:
            assert resp.status == 200
            assert await resp.read() == dep.pki.cas["Contoso-CA"].crl_der


# ------------------------------------------------------------------------------------------
# Staging a second scenario on the running lab
# ------------------------------------------------------------------------------------------


async def test_staging_a_second_deployment_switches_everything(lab: RunningLab,
                                                               cache: PKICache) -> None:
    ports = lab.ports
    first = await stage(lab, cache, scenario_text(clients=client("PC01")))
    assert first.pki.mp is not None
    reply = await mp_https(lab, first.pki, INTERNET, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=first.pki.clients["PC01"])
    assert mplist_state(reply.body)[1] == "63"
    assert reply.peer_der == first.pki.mp.der
    assert lab.hosts.get("ca01.contoso.local", 80) == ports.cdp

    second = await stage(lab, cache, scenario_text(
        check_crl=False, internet=False, contoso_extra=f'cdp = ["{PKI_CDP}"]',
        mp_cert=f'issuer = "Contoso-CA"\nsan = ["{INTRA}"]', clients=client("PC01")))
    assert second.pki.mp is not None
    assert second.pki.mp.der != first.pki.mp.der
    # The servers were not restarted.
    assert lab.ports == ports
    assert lab.hosts.get(INTRA, 443) == ports.mp_https
    assert lab.hosts.get(INTRA, 80) == ports.mp_http
    assert lab.hosts.get("pki.contoso.com", 80) == ports.cdp
    # The internet FQDN is gone; ca01 only serves the AIA certificate now.
    assert lab.hosts.get(INTERNET, 443) is None
    assert lab.hosts.get(INTERNET, 80) is None
    assert lab.hosts.get("ca01.contoso.local", 80) == ports.cdp
    assert lab.deployment is second
    assert lab.mp_state.deployment is second and lab.cdp_state.deployment is second

    reply = await mp_https(lab, second.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPLIST",
                           cert=second.pki.clients["PC01"])
    assert mplist_state(reply.body)[1] == "31"
    assert reply.peer_der == second.pki.mp.der
    mpcert = await mp_https(lab, second.pki, INTRA, "GET", "/SMS_MP/.sms_aut?MPCERT",
                            cert=second.pki.clients["PC01"])
    assert ET.fromstring(mpcert.body).findtext("Certificate") == second.pki.mp.der.hex().upper()

    new = await exchange(ports.cdp, http_request("GET", "/CertEnroll/Contoso-CA.crl",
                                                 "pki.contoso.com"))
    assert (new.status, new.body) == (200, second.pki.cas["Contoso-CA"].crl_der)
    old = await exchange(ports.cdp, http_request("GET", "/CertEnroll/Contoso-CA.crl",
                                                 "ca01.contoso.local"))
    assert old.status == 404
    aia = await exchange(ports.cdp, http_request(
        "GET", "/CertEnroll/ca01.contoso.local_Contoso-CA.crt", "ca01.contoso.local"))
    assert (aia.status, aia.body) == (200, second.pki.cas["Contoso-CA"].cert_der)
    # The directory switched too: the ldap:/// CRL and delta CRL are gone, the ldap:/// CA
    # certificate stays.
    assert (len(first.directory), len(second.directory)) == (3, 1)
