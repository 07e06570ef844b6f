"""LDAPv3 on the wire (RFC 4511), for both ends of the lab's directory.

The directory server (:mod:`lab.servers.ldap_app`) and CryptoAPI's LDAP retrieval
(:mod:`lab.cryptoapi.ldap`) never import each other; both speak through this module, as
both sides of HTTP speak through :mod:`lab.protocols.network`.

Why these libraries, and why not ldap3's ``Connection``:

* **ldap3's protocol definitions** (``ldap3.protocol.rfc4511``) are RFC 4511 Appendix B
  written as pyasn1 types, maintained with ldap3, the standard pure-Python LDAP client
  (it runs on every platform the lab does and needs no C library, unlike python-ldap).
  Its operation helpers build the requests the way its own client does
  (``bind_operation``, ``search_operation`` with its RFC 4515 filter parser,
  ``unbind_operation``) and print a decoded filter back (``filter_to_string``).
* **pyasn1's BER codec** encodes every PDU (through ldap3's ``Encoder``, which writes
  BOOLEAN TRUE as 0xFF as RFC 4511 §5.1 asks) and decodes every *request* the server
  receives, strictly against the ``LDAPMessage`` type: input from anyone, so a PDU that does
  not decode is refused, never guessed at. (ldap3's recursive search Filter does not decode
  with pyasn1, ldap3 being a client that never decodes one; the decoder uses ldap3's types
  with that recursion unrolled, see :func:`_filter_spec`.)
* Responses, which come from the lab's own server, are decoded by ldap3's fast BER decoder
  for responses (``decode_message_fast``, what ldap3's own client uses by default): pyasn1
  takes about 0.1 ms per message, which would make an LDAP retrieval several times dearer
  than an HTTP GET of the same CRL.
* ldap3's ``Connection`` is not used: it is synchronous (or runs its own threads), and the
  whole lab runs in one asyncio event loop. PDUs go over asyncio streams instead; the only
  hand-written BER here is :func:`read_pdu`, which reads one definite-length TLV header to
  know how many bytes the next PDU has (and refuses one above a cap before reading it).

Lab-private extension: a slow directory (the ``ldap_delay`` fault) is simulated, never slept.
The server attaches a *response control* to its SearchResultDone, type
:data:`SIMULATED_DELAY_CONTROL` (an OID under 1.3.6.1.4.1.32473, the enterprise number IANA
reserves for documentation, RFC 5612), value the delay in milliseconds as ASCII digits, the
LDAP counterpart of the CDP web server's ``X-Lab-Simulated-Delay-Ms`` header. Unknown
response controls are ignored by LDAP clients (ldapsearch prints it), so this does not change
what a real client sees.
"""

from __future__ import annotations

import asyncio
import functools
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# ldap3 2.9.1 (its latest release) reads pyasn1's encoder tables under their old names, which
# pyasn1 0.6 still serves with a DeprecationWarning at import time: silenced here, for these
# imports only, so that a run with warnings as errors (pytest's filterwarnings) still works.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            message=r".* is deprecated\. Please use .* instead")
    from ldap3.core.results import RESULT_CODES  # type: ignore[import-untyped]
    from ldap3.operation.bind import bind_operation  # type: ignore[import-untyped]
    from ldap3.operation.search import (  # type: ignore[import-untyped]
        filter_to_string,
        search_operation,
    )
    from ldap3.operation.unbind import unbind_operation  # type: ignore[import-untyped]
    from ldap3.protocol import rfc4511  # type: ignore[import-untyped]
    from ldap3.protocol.rfc4511 import (  # type: ignore[import-untyped]
        LDAPDN,
        LDAPOID,
        AddResponse,
        AttributeDescription,
        AttributeValue,
        BindResponse,
        CompareResponse,
        Control,
        Controls,
        ControlValue,
        DelResponse,
        ExtendedResponse,
        LDAPMessage,
        LDAPString,
        MessageID,
        ModifyDNResponse,
        ModifyResponse,
        PartialAttribute,
        PartialAttributeList,
        ProtocolOp,
        ResponseName,
        ResultCode,
        SearchResultDone,
        SearchResultEntry,
        Vals,
    )
    from ldap3.utils.asn1 import decode_message_fast, encode  # type: ignore[import-untyped]
    from pyasn1.codec.ber import decoder  # type: ignore[import-untyped]
    from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
    from pyasn1.type.namedtype import NamedType, NamedTypes  # type: ignore[import-untyped]
    from pyasn1.type.tag import (  # type: ignore[import-untyped]
        Tag,
        tagClassContext,
        tagFormatConstructed,
    )

from lab.errors import LdapProtocolError

LDAP_PORT = 389
MAX_REQUEST_PDU = 1 << 20
"""The largest request PDU the directory reads (1 MiB); a CRL request is about 200 bytes."""
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"
"""RFC 4511 §4.4.1: the unsolicited notification a server sends before it drops a
connection (messageID 0), here after a PDU it cannot decode."""
SIMULATED_DELAY_CONTROL = "1.3.6.1.4.1.32473.1"
"""The lab's response control: how long the search took, simulated (see the module
docstring)."""

SUCCESS = 0
OPERATIONS_ERROR = 1
PROTOCOL_ERROR = 2
AUTH_METHOD_NOT_SUPPORTED = 7
NO_SUCH_OBJECT = 32
INAPPROPRIATE_AUTHENTICATION = 48
UNWILLING_TO_PERFORM = 53

SCOPES = {0: "base", 1: "one", 2: "sub"}
"""Search scopes by their RFC 4511 value, as LDAP URLs and ldapsearch's ``-s`` spell them."""
_SCOPE_VALUES = {"base": 0, "one": 1, "onelevel": 1, "sub": 2, "subtree": 2}

RESPONSE_OF = {
    "bindRequest": "bindResponse",
    "searchRequest": "searchResDone",
    "modifyRequest": "modifyResponse",
    "addRequest": "addResponse",
    "delRequest": "delResponse",
    "modDNRequest": "modDNResponse",
    "compareRequest": "compareResponse",
    "extendedReq": "extendedResp",
}
"""The response each request operation is answered with (unbind and abandon get none)."""
_APPLICATION_TAGS = {1: "bindResponse", 4: "searchResEntry", 5: "searchResDone",
                     7: "modifyResponse", 9: "addResponse", 11: "delResponse",
                     13: "modDNResponse", 15: "compareResponse", 19: "searchResRef",
                     24: "extendedResp", 25: "intermediateResponse"}

_DECODE_ERRORS = (PyAsn1Error, ValueError, TypeError, IndexError, KeyError, AttributeError,
                  RecursionError, UnicodeError, OverflowError)
"""What decoding hostile bytes can raise; each is turned into :class:`LdapProtocolError`."""


_RDN_SPLIT = re.compile(r"(?<!\\),")


def dn_key(dn: str) -> str:
    """``dn`` as a directory compares DNs: RDN by RDN (split at unescaped commas), spaces
    around ``,`` and ``=`` ignored, case-insensitive."""
    out = []
    for rdn in _RDN_SPLIT.split(dn):
        kind, _, value = rdn.partition("=")
        out.append(f"{kind.strip()}={value.strip()}".lower())
    return ",".join(out)


def result_name(code: int) -> str:
    """``noSuchObject`` for 32: the RFC 4511 name of a result code."""
    name = RESULT_CODES.get(code)
    return str(name) if name else f"result {code}"


def scope_value(scope: str) -> int:
    """The RFC 4511 value of an LDAP URL's scope (``base`` when empty)."""
    try:
        return _SCOPE_VALUES[(scope or "base").lower()]
    except KeyError:
        raise LdapProtocolError(f"unknown search scope {scope!r}") from None


# -- framing ----------------------------------------------------------------------------------

def pdu_size(header: bytes) -> int | None:
    """The total size of the PDU whose first bytes are ``header``, or None when more header
    bytes are needed. Raises LdapProtocolError for what no LDAP PDU starts with: another tag
    than SEQUENCE, the indefinite length form (RFC 4511 §5.1 allows only definite lengths),
    or a length of more than 4 bytes."""
    if len(header) < 2:
        return None
    if header[0] != 0x30:
        raise LdapProtocolError(
            f"an LDAPMessage starts with SEQUENCE (0x30), got 0x{header[0]:02x}")
    first = header[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0:
        raise LdapProtocolError("indefinite length (LDAP allows only definite lengths)")
    if count > 4:
        raise LdapProtocolError(f"a length of {count} bytes")
    if len(header) < 2 + count:
        return None
    return 2 + count + int.from_bytes(header[2:2 + count], "big")


async def read_pdu(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One whole LDAPMessage from ``reader``, at most ``limit`` bytes.

    Raises LdapProtocolError for a header no LDAP PDU has or a PDU above ``limit`` (before
    reading its body), and ``asyncio.IncompleteReadError`` when the peer closes first (with no
    bytes read: a clean end of the connection)."""
    header = await reader.readexactly(2)
    size = pdu_size(header)
    if size is None:
        header += await reader.readexactly(header[1] & 0x7F)
        size = pdu_size(header)
        assert size is not None
    if size > limit:
        raise LdapProtocolError(f"a PDU of {size} bytes (the limit is {limit})")
    return header + await reader.readexactly(size - len(header))


# -- encoding -----------------------------------------------------------------------------------

def _message(message_id: int, op: str, body: Any,
             controls: Sequence[tuple[str, bytes]] = ()) -> bytes:
    msg = LDAPMessage()
    msg["messageID"] = MessageID(message_id)
    msg["protocolOp"] = ProtocolOp().setComponentByName(op, body)
    if controls:
        seq = Controls()
        for i, (oid, value) in enumerate(controls):
            control = Control()
            control["controlType"] = LDAPOID(oid)
            control["controlValue"] = ControlValue(value)
            seq.setComponentByPosition(i, control)
        msg["controls"] = seq
    return bytes(encode(msg))


def bind_request(message_id: int) -> bytes:
    """An anonymous simple bind, version 3."""
    return _message(message_id, "bindRequest", bind_operation(3, "ANONYMOUS"))


def search_request(message_id: int, base: str, *, scope: int = 0,
                   filter_text: str = "(objectClass=*)",
                   attributes: Sequence[str] = ()) -> bytes:
    """A search (``filter_text`` in RFC 4515 syntax; parentheses added when missing, as LDAP
    URLs leave them out). LdapProtocolError for a filter that does not parse."""
    text = filter_text.strip() or "(objectClass=*)"
    if not text.startswith("("):
        text = f"({text})"
    try:
        body = search_operation(base, text, scope, 0, list(attributes) or ["*"], 0, 0, False,
                                False, False)
    except Exception as e:  # ldap3's LDAPInvalidFilterError and friends
        raise LdapProtocolError(f"the search filter {filter_text!r} does not parse: {e}") from e
    return _message(message_id, "searchRequest", body)


def unbind_request(message_id: int) -> bytes:
    return _message(message_id, "unbindRequest", unbind_operation())


def _result(cls: Any, code: int, matched_dn: str, diagnostic: str) -> Any:
    body = cls()
    body["resultCode"] = ResultCode(code)
    body["matchedDN"] = LDAPDN(matched_dn)
    body["diagnosticMessage"] = LDAPString(diagnostic)
    return body


_RESULT_TYPES: dict[str, Any] = {
    "bindResponse": BindResponse, "searchResDone": SearchResultDone,
    "modifyResponse": ModifyResponse, "addResponse": AddResponse, "delResponse": DelResponse,
    "modDNResponse": ModifyDNResponse, "compareResponse": CompareResponse,
    "extendedResp": ExtendedResponse,
}


def bind_response(message_id: int, code: int, diagnostic: str = "") -> bytes:
    return ldap_result(message_id, "bindResponse", code, diagnostic=diagnostic)


def ldap_result(message_id: int, op: str, code: int, *, matched_dn: str = "",
                diagnostic: str = "", controls: Sequence[tuple[str, bytes]] = ()) -> bytes:
    """An LDAPResult-shaped response: ``op`` is one of :data:`RESPONSE_OF`'s values
    (``searchResDone``, ``bindResponse``, ``modifyResponse``, ``extendedResp``, ...)."""
    body = _result(_RESULT_TYPES[op], code, matched_dn, diagnostic)
    return _message(message_id, op, body, controls)


def search_entry(message_id: int, dn: str,
                 attributes: Iterable[tuple[str, Sequence[bytes]]]) -> bytes:
    """A SearchResultEntry: ``attributes`` as (description, values)."""
    entry = SearchResultEntry()
    entry["object"] = LDAPDN(dn)
    partial = PartialAttributeList()
    for i, (name, values) in enumerate(attributes):
        attribute = PartialAttribute()
        attribute["type"] = AttributeDescription(name)
        vals = Vals()
        for j, value in enumerate(values):
            vals.setComponentByPosition(j, AttributeValue(value))
        attribute["vals"] = vals
        partial.setComponentByPosition(i, attribute)
    entry["attributes"] = partial
    return _message(message_id, "searchResEntry", entry)


def notice_of_disconnection(code: int, diagnostic: str) -> bytes:
    """RFC 4511 §4.4.1: messageID 0, an ExtendedResponse named 1.3.6.1.4.1.1466.20036."""
    body = _result(ExtendedResponse, code, "", diagnostic)
    body["responseName"] = ResponseName(NOTICE_OF_DISCONNECTION)
    return _message(0, "extendedResp", body)


# -- requests, decoded (the server's side) ------------------------------------------------------

@dataclass(frozen=True)
class FilterNode:
    """A search filter, decoded: ``and``/``or`` (children), ``not`` (one child), ``eq``
    (attribute = value), ``present`` (attribute); any other kind (substrings, ordering,
    approximate, extensible) the directory treats as Undefined."""

    kind: str
    attribute: str = ""
    value: bytes = b""
    children: tuple[FilterNode, ...] = ()


MAX_FILTER_DEPTH = 32
"""How deeply ``&``, ``|`` and ``!`` may nest in a search filter the directory decodes."""


def _replaced(spec: Any, name: str, component: Any) -> Any:
    """ldap3's ``spec`` with its component ``name`` replaced by ``component``."""
    return type(spec)(componentType=NamedTypes(*(
        NamedType(name, component) if nt.name == name else nt
        for nt in spec.componentType.namedTypes)))


class _Filter(rfc4511.Filter):  # type: ignore[misc]
    """ldap3's Filter with a short ``repr``: pyasn1 formats every Sequence that holds one into
    a message when it computes tag maps, and the unrolled tree's full ``repr`` is exponential
    in its depth."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.getName() if self.isValue else 'schema'}>"


def _filter_spec(depth: int) -> Any:
    """RFC 4511's Filter for decoding, ``depth`` levels of ``and``/``or``/``not`` deep.

    ldap3's recursive Filter encodes well but does not decode with pyasn1 0.6: pyasn1 copies
    a type's components into each instance when it is created, before ldap3 ties the
    recursion (``And.componentType = Filter()``), and ldap3 models ``not`` as a CHOICE nested
    in the explicit tag. Here the recursion is unrolled to a fixed depth (deeper filters do not
    decode, which also bounds the decoder's recursion) and ``not [2] Filter`` is the explicitly
    tagged Filter RFC 4511 writes; every other alternative is ldap3's.
    """
    leaves = [nt for nt in rfc4511.Filter.componentType.namedTypes
              if nt.name not in ("and", "or", "notFilter")]
    spec = _Filter(componentType=NamedTypes(*leaves))
    for _ in range(depth):
        spec = _Filter(componentType=NamedTypes(
            NamedType("and", rfc4511.And(componentType=spec)),
            NamedType("or", rfc4511.Or(componentType=spec)),
            NamedType("notFilter", spec.subtype(
                explicitTag=Tag(tagClassContext, tagFormatConstructed, 2))),
            *leaves))
    return spec


@functools.cache
def _request_spec() -> Any:
    """``LDAPMessage`` as the directory decodes requests (ldap3's, with :func:`_filter_spec`),
    built at the first request (about 10 ms, which a run without LDAP traffic never pays)."""
    return _replaced(rfc4511.LDAPMessage(), "protocolOp", _replaced(
        rfc4511.ProtocolOp(), "searchRequest", _replaced(
            rfc4511.SearchRequest(), "filter", _filter_spec(MAX_FILTER_DEPTH))))


def _filter(f: Any) -> tuple[FilterNode, str]:
    """A decoded filter as a :class:`FilterNode`, and as RFC 4515 text (for the log)."""
    name = f.getName()
    if name in ("and", "or"):
        children = [_filter(c) for c in f[name]]
        text = "(" + ("&" if name == "and" else "|") + "".join(t for _, t in children) + ")"
        return FilterNode(name, children=tuple(n for n, _ in children)), text
    if name == "notFilter":
        child, text = _filter(f[name])
        return FilterNode("not", children=(child,)), f"(!{text})"
    try:
        text = str(filter_to_string(f))
    except PyAsn1Error:  # ldap3 cannot print every leaf back
        text = ""
    if not text.isprintable():  # nor an extensible match in RFC 4515 form
        text = f"({name})"
    if name == "equalityMatch":
        ava = f[name]
        return FilterNode("eq", str(ava["attributeDesc"]), bytes(ava["assertionValue"])), text
    if name == "present":
        return FilterNode("present", str(f[name])), text
    return FilterNode(name), text


@dataclass(frozen=True)
class Request:
    """One request PDU as the directory needs it."""

    message_id: int
    op: str
    """The RFC 4511 protocolOp name: ``bindRequest``, ``searchRequest``, ``unbindRequest``..."""
    dn: str = ""
    """The bind name, the search base, or the entry an update names."""
    version: int = 0
    auth: str = ""
    """Bind: ``simple``, ``sasl``, ``sicilyNegotiate``, ..."""
    password: bool = False
    """Bind: whether a simple bind carried a password (never kept)."""
    scope: int = 0
    filter: FilterNode | None = None
    filter_text: str = ""
    attributes: tuple[str, ...] = ()
    types_only: bool = False
    request_name: str = ""
    """Extended operations: the requested OID."""
    controls: tuple[str, ...] = field(default=())
    """The OIDs of the request's controls."""


def decode_request(pdu: bytes) -> Request:
    """Decode one request PDU strictly (pyasn1 against ``LDAPMessage``).

    LdapProtocolError for anything that is not exactly one well-formed LDAPMessage carrying
    a request operation."""
    try:
        msg, rest = decoder.decode(pdu, asn1Spec=_request_spec())
        if rest:
            raise LdapProtocolError(f"{len(rest)} bytes after the LDAPMessage")
        message_id = int(msg["messageID"])
        choice = msg["protocolOp"]
        op = str(choice.getName())
        body = choice.getComponent()
        controls: tuple[str, ...] = ()
        if msg["controls"].isValue:
            controls = tuple(str(c["controlType"]) for c in msg["controls"])
        if op == "bindRequest":
            auth = body["authentication"]
            kind = str(auth.getName())
            password = kind == "simple" and len(bytes(auth.getComponent())) > 0
            return Request(message_id, op, dn=str(body["name"]), version=int(body["version"]),
                           auth=kind, password=password, controls=controls)
        if op == "searchRequest":
            node, text = _filter(body["filter"])
            return Request(message_id, op, dn=str(body["baseObject"]), scope=int(body["scope"]),
                           filter=node, filter_text=text,
                           attributes=tuple(str(a) for a in body["attributes"]),
                           types_only=bool(body["typesOnly"]), controls=controls)
        if op == "extendedReq":
            return Request(message_id, op, request_name=str(body["requestName"]),
                           controls=controls)
        if op in ("modifyRequest", "compareRequest", "modDNRequest"):
            key = "object" if op == "modifyRequest" else "entry"
            return Request(message_id, op, dn=str(body[key]), controls=controls)
        if op == "addRequest":
            return Request(message_id, op, dn=str(body["entry"]), controls=controls)
        if op == "delRequest":
            return Request(message_id, op, dn=str(body), controls=controls)
        return Request(message_id, op, controls=controls)
    except LdapProtocolError:
        raise
    except _DECODE_ERRORS as e:
        raise LdapProtocolError(f"not an LDAPMessage: {type(e).__name__}: "
                                f"{str(e).splitlines()[0][:160] if str(e) else ''}") from None


# -- responses, decoded (the client's side) -----------------------------------------------------

@dataclass(frozen=True)
class Response:
    """One response PDU as the client needs it."""

    message_id: int
    op: str
    """``bindResponse``, ``searchResEntry``, ``searchResDone``, ``extendedResp``, ..."""
    code: int = 0
    matched_dn: str = ""
    diagnostic: str = ""
    dn: str = ""
    """searchResEntry: the entry's DN."""
    attributes: tuple[tuple[str, tuple[bytes, ...]], ...] = ()
    """searchResEntry: (description, values)."""
    controls: tuple[tuple[str, bytes], ...] = ()
    """(controlType, controlValue) of the message's controls."""

    @property
    def result(self) -> str:
        return result_name(self.code)

    def control(self, oid: str) -> bytes | None:
        return next((value for kind, value in self.controls if kind == oid), None)


def _text(value: object) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) \
        else str(value)


def decode_response(pdu: bytes) -> Response:
    """Decode one response PDU (ldap3's fast response decoder; see the module docstring).
    LdapProtocolError when it is not one."""
    try:
        if pdu_size(pdu[:6]) != len(pdu):
            raise LdapProtocolError("the PDU's length does not match its header")
        raw = decode_message_fast(pdu)
        op = _APPLICATION_TAGS.get(int(raw["protocolOp"]))
        if op is None:
            raise LdapProtocolError(f"application tag {raw['protocolOp']} is not a response")
        payload = raw["payload"]
        controls: tuple[tuple[str, bytes], ...] = ()
        for control in raw["controls"] or ():
            parts = control[3]
            oid = _text(parts[0][3])
            value = bytes(parts[-1][3]) if len(parts) > 1 and parts[-1][2] == 4 else b""
            controls += ((oid, value),)
        message_id = int(raw["messageID"])
        if op == "searchResEntry":
            attributes = tuple(
                (_text(attr[3][0][3]), tuple(bytes(v[3]) for v in attr[3][1][3]))
                for attr in payload[1][3])
            return Response(message_id, op, dn=_text(payload[0][3]), attributes=attributes,
                            controls=controls)
        if op in ("searchResRef", "intermediateResponse"):
            return Response(message_id, op, controls=controls)
        return Response(message_id, op, code=int(payload[0][3]),
                        matched_dn=_text(payload[1][3]), diagnostic=_text(payload[2][3]),
                        controls=controls)
    except LdapProtocolError:
        raise
    except _DECODE_ERRORS as e:
        raise LdapProtocolError(f"not an LDAP response: {type(e).__name__}") from None


__all__ = [
    "AUTH_METHOD_NOT_SUPPORTED",
    "INAPPROPRIATE_AUTHENTICATION",
    "LDAP_PORT",
    "MAX_REQUEST_PDU",
    "NOTICE_OF_DISCONNECTION",
    "NO_SUCH_OBJECT",
    "OPERATIONS_ERROR",
    "PROTOCOL_ERROR",
    "RESPONSE_OF",
    "SCOPES",
    "SIMULATED_DELAY_CONTROL",
    "SUCCESS",
    "UNWILLING_TO_PERFORM",
    "FilterNode",
    "Request",
    "Response",
    "bind_request",
    "bind_response",
    "decode_request",
    "decode_response",
    "dn_key",
    "ldap_result",
    "notice_of_disconnection",
    "pdu_size",
    "read_pdu",
    "result_name",
    "scope_value",
    "search_entry",
    "search_request",
    "unbind_request",
]
