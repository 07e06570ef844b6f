"""The load generator: raw HTTP/1.1 over new (mutual-)TLS connections to the lab's servers,
the messages a client sends the MP and the checks of its answers, and the two loads the bench
drives: handshakes for a while, and a fleet of clients registering and sending inventory."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.protocols.network import LOOPBACK
from lab.tools.bench.scenario import INTERNET

if TYPE_CHECKING:
    from lab.pki.build import BuiltPKI

CCM_REQUEST = "/ccm_system/request"
"""Where a client posts its messages to the MP."""
MPLIST = "/SMS_MP/.sms_aut?MPLIST"
EXCHANGE_ERRORS = (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError, ValueError)
"""What a failed :func:`exchange` raises: counted as an error of the load, never raised."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """An HTTP/1.1 answer: its status and body (Content-Length, else to the end)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length is not None else await reader.read()
    return status, body


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection, whatever state the peer left it in."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        await writer.wait_closed()


class ResumingContext(ssl.SSLContext):
    """A client context that offers the TLS session of its previous connection, as SChannel's
    client session cache does for a client's next connection to the same server (asyncio
    has no ``session`` argument: it goes in through :meth:`wrap_bio`)."""

    session: ssl.SSLSession | None = None
    resumed: int = 0

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session or self.session)


async def exchange(port: int, request: bytes, *, tls: ssl.SSLContext | None = None,
                   server_hostname: str | None = None, timeout: float = 60.0,
                   versions: Counter[str] | None = None) -> tuple[int, bytes]:
    """One request on a new connection (``Connection: close``): status and body; counts the
    TLS version negotiated in ``versions``."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            LOOPBACK, port, ssl=tls, server_hostname=server_hostname if tls else None)
        try:
            writer.write(request)
            answer = await read_response(reader)
            tls_object = writer.get_extra_info("ssl_object") if tls is not None else None
            if tls_object is not None:
                if versions is not None:
                    versions[tls_object.version() or "?"] += 1
                if isinstance(tls, ResumingContext):
                    tls.resumed += bool(tls_object.session_reused)
                    if tls.session is None:
                        # Once per client: in CPython 3.11 every read of
                        # SSLObject.session leaks a few kB (seen here: 6 kB a read).
                        tls.session = tls_object.session
            return answer
        finally:
            await close_writer(writer)


def get_request(path: str, host: str) -> bytes:
    """A GET of ``path`` on ``host`` that closes the connection after the answer."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ibcm-lab-bench\r\n"
            "Connection: close\r\n\r\n").encode()


def post_request(body: bytes, host: str = INTERNET) -> bytes:
    """A client's ``CCM_POST`` of ``body`` to the MP (``ccmhttp``), closing after it."""
    return (f"CCM_POST {CCM_REQUEST} HTTP/1.1\r\nHost: {host}\r\n"
            f"User-Agent: ccmhttp\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def registration_message(client_id: str, host: str) -> bytes:
    """A client's ``MP_ClientRegistration`` message (lab-shaped XML)."""
    return (f"<Msg><TargetEndpoint>MP_ClientRegistration</TargetEndpoint>"
            f"<ClientID>{client_id}</ClientID><SourceHost>{host}</SourceHost></Msg>").encode()


def client_contexts(pki: BuiltPKI) -> list[ssl.SSLContext]:
    """One TLS context per client certificate of ``pki``: the lab's roots, the MP's name
    checked, the client's certificate presented."""
    contexts = []
    for issued in pki.clients.values():
        ctx = ssl.create_default_context(cadata=pki.trust_pem().decode())
        ctx.load_cert_chain(issued.chain_path, issued.key_path)
        contexts.append(ctx)
    return contexts


def inventory_message(client_id: str, host: str) -> bytes:
    """A client's hardware inventory message to ``MP_HinvEndpoint`` (lab-shaped XML)."""
    return (f"<Msg SchemaVersion=\"1.1\"><TargetEndpoint>MP_HinvEndpoint"
            f"</TargetEndpoint><SourceID>{client_id}</SourceID>"
            f"<SourceHost>{host}</SourceHost></Msg>").encode()


def reply_fault(kind: str, status: int, reply: bytes, client_id: str) -> tuple[str, str] | None:
    """What is wrong with the MP's answer to a client's ``registration`` or ``inventory``
    message: (what, detail), or None when it is a 200 accepting it (a registration's
    reply echoes ``client_id``)."""
    if status != 200:
        return f"HTTP {status}", reply[:200].decode("latin-1")
    try:
        root = ET.fromstring(reply)
    except ET.ParseError as e:
        return "bad XML", str(e)
    good = (root.tag == "ClientRegistrationReply"
            and root.get("ClientID") == client_id and root.get("ApprovalStatus") == "1"
            ) if kind == "registration" else (
        root.tag == "InventoryReply" and root.get("Accepted") == "1")
    return None if good else ("wrong reply", reply[:200].decode("latin-1"))


@dataclass
class Load:
    """What one load got done: answers as expected, errors, wall and CPU time."""

    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """This process's CPU time during the run (the generator's cost)."""
    resumed: int = 0
    """Connections that resumed a TLS session."""
    versions: Counter[str] = field(default_factory=Counter)
    """TLS versions negotiated, per connection."""

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 3:
            self.first_errors.append(f"{kind}: {detail}"[:300])


async def drive_handshakes(port: int, tls: ssl.SSLContext, *, seconds: float,
                           concurrency: int) -> Load:
    """``concurrency`` workers, each a loop of: a new connection, a full mutual-TLS handshake
    (no session resumption), ``GET /SMS_MP/.sms_aut?MPLIST``, the answer, close. The server
    has judged the client certificate once it answers."""
    request = get_request(MPLIST, INTERNET)
    load = Load()
    began = time.perf_counter()
    cpu = time.process_time()
    stop = began + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            try:
                status, body = await exchange(port, request, tls=tls,
                                              server_hostname=INTERNET, timeout=30,
                                              versions=load.versions)
            except EXCHANGE_ERRORS as e:
                load.fail(type(e).__name__, str(e))
                continue
            if status != 200:
                load.fail(f"HTTP {status}", body[:200].decode("latin-1"))
                continue
            load.done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.wall_s = time.perf_counter() - began
    load.cpu_s = time.process_time() - cpu
    return load


async def drive_fleet(port: int, trust: str, files: Sequence[Path], *, concurrency: int,
                      timeout: float = 120.0) -> Load:
    """Every client (at most ``concurrency`` at once) loads its own certificate and key,
    registers (``MP_ClientRegistration``) and sends inventory (``MP_HinvEndpoint``), each
    over a new mutual-TLS connection; each answer is checked.

    Each of the ``concurrency`` workers keeps one TLS context with the lab's roots and loads
    the next client's certificate and key into it (OpenSSL copies them into each connection
    as it is made), so a client costs the generator a key load, not a new context: the MP
    sees the same handshakes either way."""
    load = Load()
    next_client = 0
    began = time.perf_counter()
    cpu = time.process_time()

    async def one(i: int, tls: ResumingContext) -> None:
        tls.load_cert_chain(files[i])
        tls.session = None  # a new client: nothing to resume until it has connected once
        tls.resumed = 0
        host = f"FLEET{i:05d}"
        client_id = f"GUID:{str(uuid.uuid4()).upper()}"
        messages = (("registration", registration_message(client_id, host)),
                    ("inventory", inventory_message(client_id, host)))
        for kind, body in messages:
            try:
                status, reply = await exchange(port, post_request(body), tls=tls,
                                               server_hostname=INTERNET, timeout=timeout,
                                               versions=load.versions)
            except EXCHANGE_ERRORS as e:
                load.fail(f"{kind}: {type(e).__name__}", str(e))
                return
            fault = reply_fault(kind, status, reply, client_id)
            if fault is not None:
                load.fail(f"{kind}: {fault[0]}", fault[1])
                return
            load.done += 1
        load.resumed += tls.resumed

    async def worker() -> None:
        nonlocal next_client
        tls = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_verify_locations(cadata=trust)
        while next_client < len(files):
            i = next_client
            next_client += 1
            await one(i, tls)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(files)))))
    load.wall_s = time.perf_counter() - began
    load.cpu_s = time.process_time() - cpu
    return load
