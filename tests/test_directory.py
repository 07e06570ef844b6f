"""The domain controller's directory: a real LDAPv3 server on loopback.

* a domain-joined intranet client's CRL for an LDAP-only CDP comes over a real LDAP
  connection (bind, search, unbind), visible in its retrieval trace and in the DC's log;
* ``ldap://host/`` URLs resolve through the zones; missing objects and attributes are
  CRYPT_E_NOT_FOUND;
* the server answers what RFC 4511 asks of it (binds, base searches, filters, refusals), over
  raw sockets;
* bytes that are not LDAP (garbage, truncated PDUs, huge lengths, the wrong operation) get a
  notice of disconnection, never a crash: the next connection is served as if nothing
  happened, and a stalled connection holds up no other;
* a hypothesis fuzz of the PDU decoders (fast: a few hundred examples, the same every run).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labtest import (
    LDAP_CDP,
    PC01,
    START,
    client_table,
    contoso,
    machine,
    scenario_toml,
    stage_scenario,
    zone_session,
)
from ldap3.operation.bind import bind_operation  # type: ignore[import-untyped]
from ldap3.operation.search import search_operation  # type: ignore[import-untyped]
from ldap3.protocol.rfc4511 import (  # type: ignore[import-untyped]
    LDAPDN,
    AbandonRequest,
    AttributeDescription,
    AttributeValue,
    AttributeValueAssertion,
    CompareRequest,
    DelRequest,
    ExtendedRequest,
    LDAPMessage,
    MessageID,
    ProtocolOp,
    RequestName,
)
from ldap3.utils.asn1 import encode  # type: ignore[import-untyped]
from pyasn1.codec.ber import decoder  # type: ignore[import-untyped]

from lab import codes
from lab.clock import Clock
from lab.cryptoapi.ldap import ldap_search
from lab.cryptoapi.retrieval import Retriever
from lab.cryptoapi.revocation import check_chain
from lab.errors import LdapProtocolError
from lab.pki.cache import PKICache
from lab.protocols.ldapwire import (
    MAX_REQUEST_PDU,
    NO_SUCH_OBJECT,
    PROTOCOL_ERROR,
    SIMULATED_DELAY_CONTROL,
    SUCCESS,
    UNWILLING_TO_PERFORM,
    Response,
    bind_request,
    decode_request,
    decode_response,
    dn_key,
    ldap_result,
    pdu_size,
    read_pdu,
    search_entry,
    search_request,
    unbind_request,
)
from lab.protocols.network import LOOPBACK
from lab.report.certutil import render_step_trace
from lab.run import run_loaded
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Zone
from lab.servers.deployment import Deployment, Directory
from lab.servers.harness import RunningLab

CDP_DN = ("CN=Contoso-CA,CN=ca01,CN=CDP,CN=Public Key Services,CN=Services,"
          "CN=Configuration,DC=contoso,DC=local")
AIA_DN = ("CN=Contoso-CA,CN=AIA,CN=Public Key Services,CN=Services,CN=Configuration,"
          "DC=contoso,DC=local")
CRL_ATTR = "certificateRevocationList"
FROM_DC = re.compile(r"retrieved over LDAP from DC01\.contoso\.local \(127\.0\.0\.1:(\d+)\)")
HYPOTHESIS = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def ldap_only(extra: str = "", clients: str = PC01) -> str:
    """Contoso-CA with an LDAP-only CDP and, unless ``extra`` says otherwise, no delta CRLs
    (so the CDP object holds the base CRL only)."""
    if "delta_cdp" not in extra:
        extra += "\ndelta_cdp = []"
    return scenario_toml(title="test_directory", cas=contoso('cdp = ["ldap"]\n' + extra),
                         clients=clients)


async def stage(lab: RunningLab, cache: PKICache, text: str | None = None) -> Deployment:
    return await stage_scenario(lab, cache, text or ldap_only(), name="test-directory")


def message(message_id: int, op: str, body: Any) -> bytes:
    """A request PDU built with ldap3's own types (for what the lab's client never sends)."""
    msg = LDAPMessage()
    msg["messageID"] = MessageID(message_id)
    msg["protocolOp"] = ProtocolOp().setComponentByName(op, body)
    return bytes(encode(msg))


class Conn:
    """A raw LDAP connection to the lab's DC."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        pdu = await asyncio.wait_for(read_pdu(self.reader, 1 << 24), 120)  # a hang guard
        strict, rest = decoder.decode(pdu, asn1Spec=LDAPMessage())  # the server's BER is valid
        assert rest == b"" and int(strict["messageID"]) == decode_response(pdu).message_id
        return decode_response(pdu)

    async def until_done(self) -> list[Response]:
        got = [await self.response()]
        while got[-1].op == "searchResEntry":
            got.append(await self.response())
        return got

    async def closed(self) -> bool:
        """Whether the server closes the connection (EOF); 120 s only guard a hang."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 120) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


async def connect(lab: RunningLab) -> Conn:
    return Conn(*await asyncio.open_connection(LOOPBACK, lab.ports.ldap))


async def search_crl(lab: RunningLab) -> bytes:
    """A good bind, search and unbind on a new connection: the CRL's bytes."""
    got = await ldap_search(LOOPBACK, lab.ports.ldap, CDP_DN, CRL_ATTR, limit=1 << 24)
    assert (got.code, got.entries, len(got.values)) == (SUCCESS, 1, 1)
    return got.values[0]


# ------------------------------------------------------------------------------------------
# The client's CRL over real LDAP
# ------------------------------------------------------------------------------------------


def test_domain_joined_intranet_client_gets_the_crl_over_ldap(certs_dir: Path) -> None:
    text = ldap_only(clients=PC01 + client_table("PC02").replace(
        'name = "PC02"', 'name = "PC02"\ndomain_joined = false'))
    scenario = load_scenario_text(text, name="ldap-only")
    result = asyncio.run(run_loaded([scenario], certs=certs_dir)).scenarios[0]
    (pc01,) = result.clients[0].scenario_steps  # (ccmexec's automatic steps follow it)
    assert pc01.outcome == "ok" and pc01.crl_check is True
    assert pc01.revocation is not None
    (url,) = pc01.revocation.urls
    assert (url.url, url.result, url.simulated_ms) == (LDAP_CDP, "verified", 0)
    match = FROM_DC.fullmatch(url.source)
    assert match is not None and url.detail == f"a good CRL; {url.source}"
    crl = result.pki.cas["Contoso-CA"].crl_der
    assert [c.public_bytes(Encoding.DER) for c in pc01.revocation.crls] == [crl]
    # the certutil-style trace says where it came from, as a Lab: line under certutil's status
    trace = render_step_trace(pc01).splitlines()
    at = trace.index('  Verified "Base CRL (01)" Time: 0')
    assert trace[at + 1] == f"    Lab: {url.source}"
    assert trace[at + 2] == f"    [0.0] {LDAP_CDP}"
    # the DC's log: the client's connection bound anonymously, searched the CDP object at
    # base scope for the CRL attribute (one entry), and unbound
    log = result.directory_log
    search = next(r for r in log if r.operation == "search")
    conn = [r for r in log if r.connection == search.connection]
    assert [(r.message_id, r.operation, r.result) for r in conn] == [
        (1, "bind", "success"), (2, "search", "success"), (3, "unbind", "")]
    assert conn[0].detail == "anonymous bind" and conn[0].dn == ""
    assert (search.dn, search.scope, search.filter, search.attributes, search.entries) == (
        CDP_DN, "base", "(objectClass=cRLDistributionPoint)", (CRL_ATTR,), 1)
    assert search.peer.startswith("127.0.0.1:")
    # the twin: the workgroup neighbour is refused as Windows would, without a connection
    (pc02,) = result.clients[1].scenario_steps
    assert pc02.error is not None and pc02.error.name == "CRYPT_E_REVOCATION_OFFLINE"
    assert pc02.revocation is not None
    (refused,) = pc02.revocation.urls
    assert refused.error is codes.ERROR_DS_SERVER_DOWN and refused.simulated_ms == 15000
    assert refused.source == "" and "not domain-joined" in refused.detail


async def test_the_mp_fetches_client_crls_over_ldap_too(lab: RunningLab,
                                                        cache: PKICache) -> None:
    dep = await stage(lab, cache)
    assert dep.pki.mp is not None and lab.mp_state.retriever is not None
    got = await lab.mp_state.retriever.fetch(LDAP_CDP)
    assert got.data == dep.pki.cas["Contoso-CA"].crl_der and got.protocol == "ldap"
    assert got.detail == f"retrieved over LDAP from DC01.contoso.local (127.0.0.1:{lab.ports.ldap})"
    assert [r.operation for r in lab.directory_log] == ["bind", "search", "unbind"]


async def test_an_ldap_url_with_a_host_resolves_through_the_zones(lab: RunningLab,
                                                                  cache: PKICache) -> None:
    url = LDAP_CDP.replace("ldap:///", "ldap://dc02.contoso.local/")
    dep = await stage(lab, cache, scenario_toml(title="t", cas=contoso(f'cdp = ["{url}"]')))
    assert lab.hosts.get("dc02.contoso.local", 389) == lab.ports.ldap
    assert dep.pki.mp is not None
    chain = [dep.pki.mp.cert, dep.pki.cas["Contoso-CA"].cert]
    inside = machine(Zone.INTRANET, domain_joined=False)  # no serverless bind needed
    async with zone_session(lab, dep.network, inside) as session:
        result = await check_chain(chain, Retriever(dep.network, inside, lab.hosts, session),
                                   dep.clock.now())
    # the base CRL, then the delta CRL the base names (on by default), from the same DC
    ok, delta = result.urls
    assert (ok.url, ok.result) == (url, "verified")
    assert ok.source == f"retrieved over LDAP from dc02.contoso.local (127.0.0.1:{lab.ports.ldap})"
    assert (delta.url, delta.result, delta.crl) == (
        url.replace("?certificateRevocationList?", "?deltaRevocationList?"), "verified", "delta")
    outside = machine(Zone.INTERNET)
    async with zone_session(lab, dep.network, outside) as session:
        result = await check_chain(chain, Retriever(dep.network, outside, lab.hosts, session),
                                   dep.clock.now())
    (failed,) = result.urls
    assert (failed.result, failed.error, failed.simulated_ms) == (
        "failed", codes.ERROR_DS_SERVER_DOWN, 15000)
    assert failed.detail == ("dc02.contoso.local cannot be reached from the internet zone "
                             "(a name in the AD domain contoso.local)")


@pytest.mark.parametrize(("suffix", "why"), [
    ("CN=Nobody," + CDP_DN.split(",", 1)[1] + "?certificateRevocationList?base",
     "noSuchObject: no such object"),
    (CDP_DN + "?deltaRevocationList?base?objectClass=cRLDistributionPoint",
     "the object has no deltaRevocationList"),
    (CDP_DN + "?certificateRevocationList?base?objectClass=user",
     "the object does not match the URL's filter"),
    (CDP_DN + "?certificateRevocationList?sub?objectClass=*",
     "unwillingToPerform: scope sub: the lab's directory answers base-object searches only"),
])
async def test_what_the_directory_does_not_hold_is_not_found(
        lab: RunningLab, cache: PKICache, suffix: str, why: str) -> None:
    dep = await stage(lab, cache)
    pc01 = machine(Zone.INTRANET)
    async with zone_session(lab, dep.network, pc01) as session:
        got = await Retriever(dep.network, pc01, lab.hosts, session).fetch(f"ldap:///{suffix}")
    assert (got.data, got.error, got.simulated_ms) == (None, codes.CRYPT_E_NOT_FOUND, 0)
    assert got.detail.endswith(f"(LDAP from DC01.contoso.local (127.0.0.1:{lab.ports.ldap}): "
                               f"{why})")
    # the twin: the object the certificate names is there
    assert await search_crl(lab) == dep.pki.cas["Contoso-CA"].crl_der


async def test_the_delay_control_carries_ldap_delay(lab: RunningLab, cache: PKICache) -> None:
    await stage(lab, cache, ldap_only() + '\n[faults]\nldap_delay = "7s"\n')
    conn = await connect(lab)
    await conn.send(search_request(5, CDP_DN, attributes=[CRL_ATTR]))
    entry, done = await conn.until_done()
    assert entry.op == "searchResEntry" and done.control(SIMULATED_DELAY_CONTROL) == b"7000"
    conn.close()
    got = await ldap_search(LOOPBACK, lab.ports.ldap, CDP_DN, CRL_ATTR, limit=1 << 24)
    assert got.delay_ms == 7000
    # the twin: without the knob no control is attached
    await stage(lab, cache)
    got = await ldap_search(LOOPBACK, lab.ports.ldap, CDP_DN, CRL_ATTR, limit=1 << 24)
    assert got.delay_ms == 0 and got.values


# ------------------------------------------------------------------------------------------
# The server, operation by operation, over raw sockets
# ------------------------------------------------------------------------------------------


async def test_bind_search_unbind_by_hand(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(bind_request(1))
    bound = await conn.response()
    assert (bound.message_id, bound.op, bound.code) == (1, "bindResponse", SUCCESS)
    await conn.send(search_request(2, CDP_DN, filter_text="(objectClass=cRLDistributionPoint)",
                                   attributes=[CRL_ATTR]))
    entry, done = await conn.until_done()
    assert (entry.dn, entry.attributes) == (CDP_DN, (
        (CRL_ATTR, (dep.pki.cas["Contoso-CA"].crl_der,)),))
    assert (done.op, done.code, done.controls) == ("searchResDone", SUCCESS, ())
    # the AIA object holds the CA certificate; ;binary is an option, answered as asked
    await conn.send(search_request(3, AIA_DN, attributes=["cACertificate;binary"]))
    entry, done = await conn.until_done()
    assert entry.attributes == (("cACertificate;binary", (dep.pki.cas["Contoso-CA"].cert_der,)),)
    await conn.send(unbind_request(4))
    assert await conn.closed()
    conn.close()


@pytest.mark.parametrize(("attributes", "names"), [
    ([], ["objectClass", "cn", CRL_ATTR]),
    (["*"], ["objectClass", "cn", CRL_ATTR]),
    (["1.1"], []),
    (["CN", "certificaterevocationlist", "nosuchattribute"], ["CN", "certificaterevocationlist"]),
])
async def test_attribute_selection(lab: RunningLab, cache: PKICache, attributes: list[str],
                                   names: list[str]) -> None:
    await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(search_request(1, CDP_DN.lower(), attributes=attributes))  # DNs: any case
    entry, _done = await conn.until_done()
    assert [name for name, _ in entry.attributes] == names
    if names and names[0] == "objectClass":
        assert entry.attributes[0][1] == (b"top", b"cRLDistributionPoint")
        assert entry.attributes[1][1] == (b"Contoso-CA",)
    conn.close()


@pytest.mark.parametrize(("filter_text", "entries"), [
    ("(objectClass=*)", 1),
    ("(objectclass=CRLDISTRIBUTIONPOINT)", 1),  # objectClass matches case-insensitively
    ("(&(objectClass=cRLDistributionPoint)(!(cn=Other-CA)))", 1),
    ("(|(objectClass=user)(cn=contoso-ca))", 1),
    ("(|(objectClass=user)(cn=nope))", 0),
    ("(!(objectClass=cRLDistributionPoint))", 0),
    ("(cn=Contoso*)", 0),  # substrings are not modelled: Undefined, no entry
    ("(certificateRevocationList=*)", 1),
    ("(deltaRevocationList=*)", 0),
])
async def test_filters(lab: RunningLab, cache: PKICache, filter_text: str, entries: int) -> None:
    await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(search_request(1, CDP_DN, filter_text=filter_text, attributes=["cn"]))
    got = await conn.until_done()
    assert len(got) - 1 == entries and got[-1].code == SUCCESS
    conn.close()


def _simple_bind(name: str, password: str, version: int = 3) -> bytes:
    body = bind_operation(version, "SIMPLE", name, password) if password else \
        bind_operation(version, "ANONYMOUS")
    if name and not password:
        body["name"] = name
    return message(1, "bindRequest", body)


@pytest.mark.parametrize(("pdu", "code", "detail"), [
    (_simple_bind("", ""), SUCCESS, "anonymous bind"),
    (_simple_bind("CN=PC01,CN=Computers,DC=contoso,DC=local", "secret"), SUCCESS,
     "simple bind (the lab checks no password)"),
    (_simple_bind("CN=PC01,CN=Computers,DC=contoso,DC=local", ""), UNWILLING_TO_PERFORM,
     "unauthenticated bind (a name without a password, RFC 4513 §5.1.2)"),
    (message(1, "bindRequest", bind_operation(3, "SASL", "", sasl_mechanism="GSS-SPNEGO")), 7,
     "sasl bind: the lab's directory takes simple binds only"),
    (_simple_bind("", "", version=2), PROTOCOL_ERROR, "LDAP version 2: only version 3"),
])
async def test_binds(lab: RunningLab, cache: PKICache, pdu: bytes, code: int,
                     detail: str) -> None:
    await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(pdu)
    got = await conn.response()
    assert (got.op, got.code) == ("bindResponse", code)
    assert lab.directory_log[-1].detail == detail
    conn.close()


def _compare() -> bytes:
    body = CompareRequest()
    body["entry"] = LDAPDN(CDP_DN)
    ava = AttributeValueAssertion()
    ava["attributeDesc"] = AttributeDescription("cn")
    ava["assertionValue"] = AttributeValue(b"Contoso-CA")
    body["ava"] = ava
    return message(7, "compareRequest", body)


def _extended(oid: str) -> bytes:
    body = ExtendedRequest()
    body["requestName"] = RequestName(oid)
    return message(7, "extendedReq", body)


@pytest.mark.parametrize(("pdu", "op", "code"), [
    (search_request(7, CDP_DN, scope=2), "searchResDone", UNWILLING_TO_PERFORM),
    (search_request(7, CDP_DN, scope=1), "searchResDone", UNWILLING_TO_PERFORM),
    (search_request(7, "CN=Nobody,DC=contoso,DC=local"), "searchResDone", NO_SUCH_OBJECT),
    (search_request(7, ""), "searchResDone", NO_SUCH_OBJECT),  # no root DSE in the lab
    (message(7, "delRequest", DelRequest(CDP_DN)), "delResponse", UNWILLING_TO_PERFORM),
    (_compare(), "compareResponse", UNWILLING_TO_PERFORM),
    (_extended("1.3.6.1.4.1.1466.20037"), "extendedResp", PROTOCOL_ERROR),  # StartTLS
])
async def test_refusals_keep_the_connection(lab: RunningLab, cache: PKICache, pdu: bytes,
                                            op: str, code: int) -> None:
    dep = await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(pdu)
    got = await conn.response()
    assert (got.message_id, got.op, got.code) == (7, op, code)
    assert got.diagnostic  # says why
    # the twin: the same connection then gets the CRL (an abandon first, which gets nothing)
    await conn.send(message(8, "abandonRequest", AbandonRequest(7)))
    await conn.send(search_request(9, CDP_DN, attributes=[CRL_ATTR]))
    entry, done = await conn.until_done()
    assert (entry.message_id, entry.attributes[0][1], done.code) == (
        9, (dep.pki.cas["Contoso-CA"].crl_der,), SUCCESS)
    assert [r.operation for r in lab.directory_log][-2:] == ["abandon", "search"]
    conn.close()


# ------------------------------------------------------------------------------------------
# Hostile input: never a crash, never a traceback, the next connection is served
# ------------------------------------------------------------------------------------------


def _not_filter(depth: int) -> bytes:
    """A search whose filter is ``(!(!(...(objectClass=*))))``, ``depth`` NOTs deep."""
    decoded, _ = decoder.decode(search_request(1, CDP_DN), asn1Spec=LDAPMessage())
    req = decoded["protocolOp"].getComponent()
    head = b"".join(bytes(encode(req[k])) for k in ("baseObject", "scope", "derefAliases",
                                                     "sizeLimit", "timeLimit", "typesOnly"))
    inner = b"\x87\x0bobjectClass"  # present [7]: (objectClass=*)
    for _ in range(depth):
        inner = b"\xa2" + _len(len(inner)) + inner  # not [2]
    content = head + inner + b"\x30\x00"  # no attributes
    msg = b"\x02\x01\x01" + b"\x63" + _len(len(content)) + content
    return b"\x30" + _len(len(msg)) + msg


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


GOOD_SEARCH = search_request(1, CDP_DN, attributes=[CRL_ATTR])
HOSTILE = {
    "zeros": b"\x00" * 64,
    "random": random.Random(9).randbytes(512),
    "http": b"GET / HTTP/1.1\r\nHost: dc01\r\n\r\n",
    "indefinite length": b"\x30\x80" + GOOD_SEARCH[2:] + b"\x00\x00",
    "five length bytes": b"\x30\x85\x01\x00\x00\x00\x00",
    "2 GiB length": b"\x30\x84\x7f\xff\xff\xff" + b"x" * 100,
    "over the 1 MiB cap": b"\x30\x83\x20\x00\x00" + b"\x00" * 1000,
    "messageID only": b"\x30\x03\x02\x01\x01",
    "an unknown operation": b"\x30\x08\x02\x01\x01\x7f\x63\x02\x05\x00",
    "a response sent as a request": ldap_result(1, "searchResDone", SUCCESS),
    "an entry sent as a request": search_entry(1, CDP_DN, [("cn", [b"x"])]),
    "bytes after the message": b"\x30\x08\x02\x01\x01\x42\x00\x04\x01\x00",
    "an inner length past the content": b"\x30\x09\x02\x01\x01\x63\x20" + b"\x04\x00" * 2,
    "a filter 100 deep": _not_filter(100),
    "a filter 2000 deep": _not_filter(2000),
}
assert HOSTILE["random"][0] != 0x30  # a random PDU that announced more bytes would just wait
assert decode_request(_not_filter(3)).filter is not None  # the control: a legal nesting


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_bytes_get_a_notice_and_the_next_connection_is_served(
        lab: RunningLab, cache: PKICache, name: str, caplog: pytest.LogCaptureFixture) -> None:
    dep = await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(HOSTILE[name])
    try:
        notice = await conn.response()
    except (asyncio.IncompleteReadError, ConnectionError):
        pytest.fail("no notice of disconnection before the close")
    assert (notice.message_id, notice.op, notice.code) == (0, "extendedResp", PROTOCOL_ERROR)
    assert await conn.closed()
    conn.close()
    (refused,) = [r for r in lab.directory_log if r.operation == "malformed"]
    assert refused.result == "protocolError" and refused.detail
    assert await search_crl(lab) == dep.pki.cas["Contoso-CA"].crl_der
    assert not [r for r in caplog.records if r.name == "ibcm-lab.ldap"]  # no bug path taken


async def test_a_truncated_pdu_is_noted_and_the_next_connection_is_served(
        lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(GOOD_SEARCH[: len(GOOD_SEARCH) // 2])
    conn.writer.write_eof()
    assert await conn.closed()
    conn.close()
    for _ in range(12_000):  # up to 120 s, a hang guard
        if lab.directory_log:
            break
        await asyncio.sleep(0.01)
    (noted,) = lab.directory_log
    assert noted.operation == "malformed" and "closed inside a PDU" in noted.detail
    assert await search_crl(lab) == dep.pki.cas["Contoso-CA"].crl_der


async def test_a_stalled_connection_holds_up_no_other(lab: RunningLab, cache: PKICache) -> None:
    dep = await stage(lab, cache)
    stalled = await connect(lab)
    await stalled.send(GOOD_SEARCH[:10])  # and never the rest
    big = await connect(lab)
    await big.send(b"\x30\x83\x0f\xff\xf0")  # just under 1 MiB announced, nothing sent
    others = await asyncio.gather(*(search_crl(lab) for _ in range(20)))
    assert others == [dep.pki.cas["Contoso-CA"].crl_der] * 20
    garbage = [await connect(lab) for _ in range(10)]
    for g in garbage:
        await g.send(b"\xff" * 32)
    assert await search_crl(lab) == dep.pki.cas["Contoso-CA"].crl_der
    for c in (stalled, big, *garbage):
        c.close()


async def test_a_pdu_just_under_the_cap_is_decoded_without_blocking(
        lab: RunningLab, cache: PKICache) -> None:
    """A legal 900 KiB search (a long DN) is decoded in a worker thread and answered."""
    await stage(lab, cache)
    conn = await connect(lab)
    await conn.send(search_request(1, "CN=" + "x" * 900_000 + ",DC=contoso,DC=local"))
    other = asyncio.create_task(search_crl(lab))
    (done,) = await conn.until_done()
    assert done.code == NO_SUCH_OBJECT
    assert await other
    conn.close()


# ------------------------------------------------------------------------------------------
# The wire module and the directory's objects
# ------------------------------------------------------------------------------------------


def test_pdu_size() -> None:
    assert pdu_size(b"\x30") is None
    assert pdu_size(b"\x30\x05") == 7
    assert pdu_size(b"\x30\x82\x01") is None
    assert pdu_size(b"\x30\x82\x01\x00") == 4 + 256
    for bad in (b"\x31\x00", b"\x30\x80", b"\x30\x85"):
        with pytest.raises(LdapProtocolError):
            pdu_size(bad)
    assert MAX_REQUEST_PDU == 1 << 20


def test_requests_round_trip_through_the_strict_decoder() -> None:
    request = decode_request(search_request(
        2, CDP_DN, filter_text="objectClass=cRLDistributionPoint", attributes=[CRL_ATTR]))
    assert (request.message_id, request.op, request.dn, request.scope, request.filter_text,
            request.attributes) == (2, "searchRequest", CDP_DN, 0,
                                    "(objectClass=cRLDistributionPoint)", (CRL_ATTR,))
    assert request.filter is not None and request.filter.kind == "eq"
    bind = decode_request(bind_request(1))
    assert (bind.op, bind.version, bind.auth, bind.dn, bind.password) == (
        "bindRequest", 3, "simple", "", False)
    assert decode_request(unbind_request(3)).op == "unbindRequest"
    with pytest.raises(LdapProtocolError, match="does not parse"):
        search_request(1, CDP_DN, filter_text="(objectClass=")


def test_search_operation_is_ldap3s() -> None:
    """The client's search PDU is exactly what ldap3's own client would send."""
    body = search_operation(CDP_DN, "(objectClass=cRLDistributionPoint)", 0, 0, [CRL_ATTR],
                            0, 0, False, False, False)
    assert search_request(2, CDP_DN, filter_text="(objectClass=cRLDistributionPoint)",
                          attributes=[CRL_ATTR]) == message(2, "searchRequest", body)


def test_directory_objects_from_publications(cache: PKICache) -> None:
    from lab.pki.build import build_pki
    from lab.protocols.network import Network

    text = ldap_only('delta_cdp = ["ldap"]')
    scenario = load_scenario_text(text, name="objects")
    pki = build_pki(scenario, Clock(START), cache)
    directory = Directory(pki.publications)
    cdp = directory.get(CDP_DN.replace(",", " , ").upper())
    assert cdp is not None and cdp.dn == CDP_DN
    ca = pki.cas["Contoso-CA"]
    assert dict(cdp.attributes) == {
        "objectClass": (b"top", b"cRLDistributionPoint"), "cn": (b"Contoso-CA",),
        CRL_ATTR: (ca.crl_der,), "deltaRevocationList": (ca.delta_crl.public_bytes(Encoding.DER),)}
    aia = directory.get(AIA_DN)
    assert aia is not None and aia.get("cACertificate;binary") == (ca.cert_der,)
    assert aia.get("objectclass") == (b"top", b"certificationAuthority")
    assert len(directory) == 3 and directory.get("CN=Nobody") is None
    assert dn_key(" CN = A , DC=B ") == "cn=a,dc=b" and dn_key("CN=a\\,b,DC=c") == "cn=a\\,b,dc=c"
    assert Network(scenario).dc_host() == "DC01.contoso.local"
    assert directory.search(CDP_DN, CRL_ATTR + ";binary") == ca.crl_der


# ------------------------------------------------------------------------------------------
# Fuzz: the decoders take any bytes and raise only LdapProtocolError
# ------------------------------------------------------------------------------------------

VALID = [bind_request(1), GOOD_SEARCH, unbind_request(3),
         search_request(4, CDP_DN, filter_text="(&(cn=a)(|(objectClass=*)(!(cn=b))))"),
         _simple_bind("CN=x", "y"), _compare(), _extended("1.2.3")]
RESPONSES = [ldap_result(1, "bindResponse", SUCCESS), search_entry(2, CDP_DN, [(CRL_ATTR,
             [b"\x30\x03\x02\x01\x01"])]), ldap_result(2, "searchResDone", NO_SUCH_OBJECT,
                                                     controls=[(SIMULATED_DELAY_CONTROL, b"5")])]


def _decodes_or_refuses(pdu: bytes) -> None:
    """Each decoder returns or raises LdapProtocolError, and nothing else."""
    with contextlib.suppress(LdapProtocolError):
        decode_request(pdu)
    with contextlib.suppress(LdapProtocolError):
        decode_response(pdu)
    with contextlib.suppress(LdapProtocolError):
        pdu_size(pdu[:6])


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_refuses(data)
    _decodes_or_refuses(b"\x30" + _len(len(data)) + data)


@HYPOTHESIS
@given(st.sampled_from(VALID + RESPONSES), st.lists(st.tuples(st.integers(0, 10_000),
                                                              st.integers(0, 255)), max_size=4),
       st.integers(0, 10_000))
def test_fuzz_mutated_pdus(pdu: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(pdu)
    for at, value in flips:
        data[at % len(data)] = value
    _decodes_or_refuses(bytes(data))
    _decodes_or_refuses(bytes(data[: cut % (len(data) + 1)]))
