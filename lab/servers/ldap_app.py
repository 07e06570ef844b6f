"""The domain controller's LDAP service: a real LDAPv3 server on loopback holding the objects
an enterprise CA publishes in ``CN=Configuration`` (see :class:`Directory`).

What it answers (RFC 4511; the PDUs are encoded and decoded by :mod:`lab.protocols.ldapwire`):

* **bind**: an anonymous simple bind and a simple bind with a name and a password (the lab
  checks no password) succeed; a name without a password is an unauthenticated bind,
  refused ``unwillingToPerform`` (RFC 4513 §5.1.2); SASL and Microsoft's Sicily binds get
  ``authMethodNotSupported``; another version than 3 gets ``protocolError``. Windows binds as
  the computer account with Kerberos; the lab's client binds anonymously (the lab's model);
* **search** with scope baseObject for an object it holds: the entry (when the filter
  matches, equality and presence tests, ``&``, ``|``, ``!``), then ``success``; an unknown
  DN: ``noSuchObject``; any other scope: ``unwillingToPerform`` (the lab answers what
  CryptoAPI asks, base-object searches, and no more);
* **unbind** closes the connection, **abandon** is noted; add, delete, modify, modify DN and
  compare get ``unwillingToPerform`` (read-only); an unknown extended operation (StartTLS
  included) gets ``protocolError``, as RFC 4511 §4.12 asks.

Bytes that are not an LDAPMessage (malformed BER, a truncated PDU, a length above the 1 MiB
cap, a response sent as a request) get a notice of disconnection (RFC 4511 §4.4.1) and the
connection is closed: never a traceback, and no other connection notices. Each operation is
recorded in the staged scenario's :attr:`~lab.servers.state.Staged.directory_log`
(:class:`DirectoryRecord`).

The ``ldap_delay`` fault is simulated, never slept: every SearchResultDone carries the lab's
delay control (:data:`lab.protocols.ldapwire.SIMULATED_DELAY_CONTROL`). ``ldap_down`` leaves
the DC's names unmapped (the harness), so no client connects here.

Answers are cached per request PDU until the next scenario is staged: CryptoAPI's requests
for one URL are the same bytes every time, so a retrieval costs a dictionary lookup here,
not a BER decode and encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass

from lab.clock import system_now
from lab.errors import LdapProtocolError
from lab.protocols.ldapwire import (
    AUTH_METHOD_NOT_SUPPORTED,
    MAX_REQUEST_PDU,
    NO_SUCH_OBJECT,
    PROTOCOL_ERROR,
    RESPONSE_OF,
    SCOPES,
    SIMULATED_DELAY_CONTROL,
    SUCCESS,
    UNWILLING_TO_PERFORM,
    FilterNode,
    Request,
    decode_request,
    ldap_result,
    notice_of_disconnection,
    read_pdu,
    result_name,
    search_entry,
)
from lab.results.records import DirectoryRecord
from lab.servers.deployment import Deployment, DirectoryObject
from lab.servers.state import Staged, Staging

log = logging.getLogger("ibcm-lab.ldap")

IDLE_TIMEOUT = 30.0
"""Seconds an idle connection stays open (real time: nothing in the lab waits this long)."""
THREAD_DECODE_BYTES = 16 * 1024
"""PDUs larger than this are decoded in a worker thread, so one big hostile PDU cannot hold
up the event loop every other connection shares."""
ANSWER_CACHE = 1024

_OPERATION = {"bindRequest": "bind", "searchRequest": "search", "unbindRequest": "unbind",
              "abandonRequest": "abandon", "extendedReq": "extended", "modifyRequest": "modify",
              "addRequest": "add", "delRequest": "delete", "modDNRequest": "modDN",
              "compareRequest": "compare"}


@dataclass(frozen=True)
class Answer:
    """What the server does with one request: the bytes it sends, and what it records."""

    responses: bytes
    operation: str
    result: str = ""
    entries: int = 0
    detail: str = ""
    close: bool = False


@dataclass
class _Connection:
    number: int
    peer: str
    writer: asyncio.StreamWriter
    task: asyncio.Task[object] | None


def _matches(node: FilterNode, obj: DirectoryObject) -> bool | None:
    """RFC 4511 §4.5.1.7 three-valued filter evaluation (None = Undefined)."""
    if node.kind in ("and", "or"):
        results = [_matches(c, obj) for c in node.children]
        if node.kind == "and":
            return False if False in results else (None if None in results else True)
        return True if True in results else (None if None in results else False)
    if node.kind == "not":
        inner = _matches(node.children[0], obj)
        return None if inner is None else not inner
    if node.kind == "present":
        return node.attribute.lower() == "objectclass" or obj.get(node.attribute) is not None
    if node.kind == "eq":
        values = obj.get(node.attribute)
        if values is None:
            return False
        if node.attribute.split(";", 1)[0].lower() in ("objectclass", "cn"):
            return node.value.lower() in (v.lower() for v in values)  # caseIgnoreMatch
        return node.value in values
    return None  # substrings, ordering, approximate, extensible: not modelled


def _selected(request: Request, obj: DirectoryObject) -> list[tuple[str, tuple[bytes, ...]]]:
    """The attributes a search asks for, spelled as asked (``...;binary`` included)."""
    requested = [a for a in request.attributes if a]
    if not requested or "*" in requested:
        chosen = list(obj.attributes.items())
    else:  # "1.1" asks for none, "+" for operational attributes (the lab holds none)
        chosen = []
        for name in dict.fromkeys(a for a in requested if a not in ("1.1", "+")):
            values = obj.get(name)
            if values is not None:
                chosen.append((name, values))
    return [(name, () if request.types_only else values) for name, values in chosen]


class DirectoryServer:
    """The LDAP service of the lab's DC (one per lab, reused across scenarios)."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self._numbers = itertools.count(1)
        self._connections: dict[int, _Connection] = {}
        self._decoded: dict[bytes, Request] = {}
        self._answers: dict[bytes, Answer] = {}
        self._answers_for: object = None
        """The directory (a deployment's view at one time) the cached answers came from."""

    # -- answering --------------------------------------------------------------------------

    def answer(self, request: Request, deployment: Deployment | None) -> Answer:
        """The answer to one decoded request (pure: the same request and deployment, the
        same answer)."""
        op, mid = request.op, request.message_id
        operation = _OPERATION.get(op, op)
        if op == "bindRequest":
            return self._bind(request)
        if op == "searchRequest":
            return self._search(request, deployment)
        if op == "unbindRequest":
            return Answer(b"", operation, detail="the client closes the connection", close=True)
        if op == "abandonRequest":
            return Answer(b"", operation, detail="nothing to abandon")
        if op == "extendedReq":
            text = f"the extended operation {request.request_name} is not supported"
            return Answer(ldap_result(mid, "extendedResp", PROTOCOL_ERROR, diagnostic=text),
                          operation, result_name(PROTOCOL_ERROR), detail=text)
        response = RESPONSE_OF.get(op)
        if response is not None:
            text = "the lab's directory is read-only"
            return Answer(ldap_result(mid, response, UNWILLING_TO_PERFORM, diagnostic=text),
                          operation, result_name(UNWILLING_TO_PERFORM), detail=text)
        raise LdapProtocolError(f"{op} is not a request a client sends")

    def _bind(self, request: Request) -> Answer:
        mid = request.message_id

        def reply(code: int, detail: str) -> Answer:
            diagnostic = "" if code == SUCCESS else detail
            return Answer(ldap_result(mid, "bindResponse", code, diagnostic=diagnostic),
                          "bind", result_name(code), detail=detail)

        if request.version != 3:
            return reply(PROTOCOL_ERROR, f"LDAP version {request.version}: only version 3")
        if request.auth != "simple":
            return reply(AUTH_METHOD_NOT_SUPPORTED,
                         f"{request.auth} bind: the lab's directory takes simple binds only")
        if not request.dn and not request.password:
            return reply(SUCCESS, "anonymous bind")
        if request.dn and request.password:
            return reply(SUCCESS, "simple bind (the lab checks no password)")
        if request.dn:
            return reply(UNWILLING_TO_PERFORM,
                         "unauthenticated bind (a name without a password, RFC 4513 §5.1.2)")
        return reply(UNWILLING_TO_PERFORM, "a password without a name")

    def _search(self, request: Request, deployment: Deployment | None) -> Answer:
        mid = request.message_id
        controls: list[tuple[str, bytes]] = []
        if deployment is not None and deployment.faults.ldap_delay:
            ms = int(deployment.faults.ldap_delay.total_seconds() * 1000)
            controls.append((SIMULATED_DELAY_CONTROL, str(ms).encode()))

        def done(code: int, detail: str, entries: bytes = b"", count: int = 0) -> Answer:
            diagnostic = "" if code == SUCCESS else detail
            return Answer(entries + ldap_result(mid, "searchResDone", code,
                                                diagnostic=diagnostic, controls=controls),
                          "search", result_name(code), count, detail)

        if request.scope != 0:
            return done(UNWILLING_TO_PERFORM,
                        f"scope {SCOPES.get(request.scope, request.scope)}: the lab's directory "
                        "answers base-object searches only")
        obj = deployment.directory.get(request.dn) if deployment is not None else None
        if obj is None:
            return done(NO_SUCH_OBJECT, "no such object")
        if request.filter is None or _matches(request.filter, obj) is not True:
            return done(SUCCESS, "the object does not match the filter")
        entry = search_entry(mid, obj.dn, _selected(request, obj))
        return done(SUCCESS, "one entry", entry, 1)

    def _cached(self, pdu: bytes, request: Request, deployment: Deployment | None) -> Answer:
        cache = self._answers
        # Answers hold for one deployment's published view (its CRLs change with the clock).
        current = deployment.directory if deployment is not None else None
        if self._answers_for is not current:
            cache.clear()
            self._answers_for = current
        got = cache.get(pdu)
        if got is None:
            got = self.answer(request, deployment)
            if len(cache) >= ANSWER_CACHE:
                cache.clear()
            if request.op in ("bindRequest", "searchRequest"):
                cache[pdu] = got
        return got

    # -- the connection ---------------------------------------------------------------------

    def _record(self, staged: Staged, conn: _Connection, request: Request | None,
                answer: Answer) -> None:
        deployment = staged.deployment
        when = deployment.clock.now() if deployment is not None else system_now()
        scope = SCOPES.get(request.scope, str(request.scope)) \
            if request is not None and request.op == "searchRequest" else ""
        staged.directory_log.append(DirectoryRecord(
            time=when, connection=conn.number, peer=conn.peer,
            message_id=request.message_id if request is not None else 0,
            operation=answer.operation, dn=request.dn if request is not None else "",
            scope=scope, filter=request.filter_text if request is not None else "",
            attributes=request.attributes if request is not None else (),
            result=answer.result, entries=answer.entries, detail=answer.detail))

    def _refuse(self, conn: _Connection, why: str) -> None:
        """A PDU that is not a request: a notice of disconnection, then the connection ends."""
        self._record(self.staging.current, conn, None,
                     Answer(b"", "malformed", result_name(PROTOCOL_ERROR), detail=why))
        with contextlib.suppress(Exception):
            conn.writer.write(notice_of_disconnection(PROTOCOL_ERROR, why[:200]))

    async def _decode(self, pdu: bytes) -> Request:
        cached = self._decoded.get(pdu)
        if cached is not None:
            return cached
        if len(pdu) > THREAD_DECODE_BYTES:
            return await asyncio.to_thread(decode_request, pdu)
        request = decode_request(pdu)
        if len(self._decoded) >= ANSWER_CACHE:
            self._decoded.clear()
        self._decoded[pdu] = request
        return request

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it unbinds, closes, idles out or misbehaves."""
        peer = writer.get_extra_info("peername")
        conn = _Connection(next(self._numbers),
                           f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
                           writer, asyncio.current_task())
        self._connections[conn.number] = conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(IDLE_TIMEOUT) as idle:
                while True:
                    idle.reschedule(loop.time() + IDLE_TIMEOUT)
                    try:
                        pdu = await read_pdu(reader, MAX_REQUEST_PDU)
                        request = await self._decode(pdu)
                        staged = self.staging.current
                        answer = self._cached(pdu, request, staged.deployment)
                    except asyncio.IncompleteReadError as e:
                        if e.partial:
                            self._record(self.staging.current, conn, None, Answer(
                                b"", "malformed", detail=f"the connection closed inside a "
                                f"PDU ({len(e.partial)} of {e.expected} bytes)"))
                        break
                    except LdapProtocolError as e:
                        self._refuse(conn, str(e))
                        break
                    self._record(staged, conn, request, answer)
                    if answer.responses:
                        writer.write(answer.responses)
                        await writer.drain()
                    if answer.close:
                        break
        except TimeoutError:
            pass  # idle for IDLE_TIMEOUT seconds
        except (ConnectionError, OSError):
            pass  # the client went away
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: one line, never a traceback, other connections go on
            log.warning("ldap connection %s from %s: %s: %s", conn.number, conn.peer,
                        type(e).__name__, e)
        finally:
            self._connections.pop(conn.number, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def aclose(self) -> None:
        """Close every open connection and wait for its handler (the lab is stopping)."""
        conns = list(self._connections.values())
        for conn in conns:
            conn.writer.close()
        tasks = [c.task for c in conns if c.task is not None and not c.task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)


__all__ = ["Answer", "DirectoryServer"]
