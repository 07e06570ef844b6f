"""One harness that starts every server of the lab, stages scenarios on them, and always
stops them.

The servers start once (127.0.0.1, port 0) and stay up for the whole run: the MP (HTTPS and
HTTP), the CDP/AIA web server and the domain controller's LDAP service. Each scenario is
*staged*: a new :class:`~lab.servers.state.Staged` is built whole (the MP's certificate per
SNI name, the publications the CDP server and the directory serve, a host map pointing the
scenario's names at the servers' ports: the DC, ``DC01.<domain>:389``, and every
``ldap://host/`` name at the LDAP server) and swapped in with one assignment.

    async with start_lab() as lab:
        await lab.stage(deployment)
        ...
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, MutableSequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.clock import system_now
from lab.cryptoapi.retrieval import Retriever
from lab.cryptoapi.urlcache import UrlCache
from lab.errors import HarnessError
from lab.protocols.network import LOOPBACK, HostMap, ZoneResolver
from lab.results.records import DirectoryRecord, MpRecord
from lab.servers.cdp_app import make_cdp_app
from lab.servers.deployment import Deployment
from lab.servers.faults import log_active
from lab.servers.iis import AnyMethodRunner
from lab.servers.ldap_app import DirectoryServer
from lab.servers.mp_app import make_mp_app
from lab.servers.state import Journal, JournalSink, Staged, Staging


class _NoTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]}"
            record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


SERVER_LOG = logging.getLogger("ibcm-lab.http")
SERVER_LOG.addFilter(_NoTraceback())

NO_CHECK_TIME = ssl.VerifyFlags(0x200000)
"""X509_V_FLAG_NO_CHECK_TIME: IIS judges client-certificate dates with the lab clock, so
OpenSSL must not reject them first with the system clock."""


@dataclass(frozen=True)
class Ports:
    mp_https: int
    mp_http: int
    cdp: int
    ldap: int
    """The domain controller's LDAP service (ldap:/// and ldap://host/ URLs)."""


def _placeholder_context(scratch: str) -> ssl.SSLContext:
    """The context a handshake starts in before SNI picks the staged MP's certificate."""
    import os
    import tempfile

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ibcm-lab: no certificate bound")])
    now = system_now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    fd, path = tempfile.mkstemp(dir=scratch, suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # The verification flags of a connection come from the context it starts in, not the one
    # SNI switches to: IIS judges dates with the lab clock, so OpenSSL must not judge them.
    ctx.verify_flags |= NO_CHECK_TIME
    server_session_cache(ctx)
    return ctx


def server_session_cache(ctx: ssl.SSLContext) -> None:
    """Resumable sessions the way SChannel keeps them: in the server's own session cache
    (KB 247658, ``ServerCacheTime``), one per handshake; OpenSSL's "stateful" TLS 1.3
    ticket carries only the session's identifier. OpenSSL keeps at most 20,480 sessions.

    The connection's settings come from the context it starts in (the placeholder), and its
    session goes into that context's cache even after SNI switches the certificate. With
    OpenSSL 3.0 a stateless ticket (the session, client certificate included, encrypted into
    the ticket) costs the server about 0.2 ms to make and 0.15 ms to open again; a cached
    session costs almost nothing (measured on the CI machine kind)."""
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 1


def _mp_context(deployment: Deployment) -> ssl.SSLContext | None:
    mp = deployment.pki.mp
    if mp is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(mp.chain_path, mp.key_path)
    # IIS asks for a client certificate but lets the request through without one, so that
    # it can answer 403.7; it judges the certificate itself (403.13/16/17).
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_flags |= NO_CHECK_TIME
    server_session_cache(ctx)
    every_ca = b"".join(ca.cert_pem for ca in deployment.pki.cas.values())
    ctx.load_verify_locations(cadata=every_ca.decode())
    return ctx


def _host_map(deployment: Deployment, ports: Ports, *, https: bool) -> HostMap:
    """Where each of the scenario's names answers (``https``: the MP has a certificate)."""
    hosts = HostMap()
    faults = deployment.faults
    if not faults.mp_down:  # the mp_down fault: nothing listens for the MP's names
        for name in deployment.mp_names:
            if https:
                hosts.set(name, 443, ports.mp_https)
            # Without a certificate IIS has no HTTPS binding: nothing answers on 443.
            hosts.set(name, 80, ports.mp_http)
    if not faults.cdp_down:
        for host, port in deployment.cdp_hosts():
            hosts.set(host, port, ports.cdp)
    if not faults.ldap_down:  # the ldap_down fault: no DC answers LDAP
        for host, port in deployment.ldap_hosts():
            hosts.set(host, port, ports.ldap)
    return hosts


class RunningLab:
    """The servers of a started lab; see :func:`start_lab`."""

    def __init__(self, ports: Ports, staging: Staging,
                 mp_tls: ssl.SSLContext | None = None, *, journal_window: int | None = None,
                 journal_sink: JournalSink | None = None) -> None:
        self.ports = ports
        self.journal_window = journal_window
        """Keep only this many entries of each journal in memory (None: all, as a run
        needs them); ``journal_sink`` receives every entry as it is recorded."""
        self.journal_sink = journal_sink
        self._mp_tls = mp_tls
        self._staging = staging
        self._session: aiohttp.ClientSession | None = None

    @property
    def staged(self) -> Staged:
        """What the servers serve now (and what they recorded since it was staged)."""
        return self._staging.current

    mp_state = staged
    """The MP's view of the staged scenario (its deployment, contexts, records, log)."""
    cdp_state = staged
    """The CDP server's view of the staged scenario."""

    @property
    def deployment(self) -> Deployment | None:
        return self.staged.deployment

    @property
    def hosts(self) -> HostMap:
        """Where the staged scenario's names answer (a new map for each staging)."""
        return self.staged.hosts

    @property
    def active_faults(self) -> list[str]:
        """The staged scenario's active fault knobs (``name=value``), logged once."""
        return list(self.staged.active_faults)

    def tls_session_stats(self) -> dict[str, int]:
        """The MP's TLS session cache, as OpenSSL counts it (``number`` cached, ``hits``
        resumed from it, ``accept_good`` handshakes); empty for a lab started without one."""
        return self._mp_tls.session_stats() if self._mp_tls is not None else {}

    async def stage(self, deployment: Deployment) -> None:
        """Serve ``deployment`` from now on (replacing whatever was staged)."""
        await self._close_session()
        context = _mp_context(deployment)
        contexts = ({} if context is None or deployment.faults.mp_down
                    else {name.lower(): context for name in deployment.mp_names})
        hosts = _host_map(deployment, self.ports, https=context is not None)
        resolver = ZoneResolver(deployment.network, deployment.mp_machine, hosts)
        # No await from here to the swap: the session is the lab's to close the moment it exists.
        self._session = session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=30))
        # IIS's CryptoAPI keeps the CRLs it retrieves until their nextUpdate, in the MP
        # machine's URL cache: one retrieval per CDP URL serves every client certificate the
        # CA issued (reference §5.2, §5.2b).
        retriever = Retriever(deployment.network, deployment.mp_machine, hosts, session,
                              cache=UrlCache(), now=deployment.clock.now)
        active = log_active(deployment.scenario.name, deployment.faults)
        staged = Staged(deployment=deployment, hosts=hosts,
                        contexts=MappingProxyType(contexts),
                        retriever=retriever, active_faults=tuple(active),
                        **self._journals())
        self._staging.current = staged

    def _journals(self) -> dict[str, Any]:
        """Fresh journals for a staging: bounded windows for a long-running lab."""
        window, sink = self.journal_window, self.journal_sink
        if window is None:
            return {}

        def to_sink(name: str) -> Callable[[Any], None] | None:
            return None if sink is None else (lambda entry: sink(name, entry))

        return {name: Journal(window, to_sink(name))
                for name in ("records", "log", "cdp_records", "directory_log")}

    def bind_mp_contexts(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        """Let SNI hand out ``contexts`` (server name -> context) from now on, everything
        else staged as it is (the bench switches the MP between RSA and ECDSA)."""
        merged = {**self.staged.contexts, **{n.lower(): c for n, c in contexts.items()}}
        self._staging.current = replace(self.staged, contexts=MappingProxyType(merged))

    def mp_records(self, step: str) -> list[MpRecord]:
        return self.staged.records_for(step)

    @property
    def directory_log(self) -> MutableSequence[DirectoryRecord]:
        """What the DC's LDAP service answered since the scenario was staged."""
        return self.staged.directory_log

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        """Stage nothing (the journals stay readable) and close the MP's CRL session."""
        self._staging.current = replace(self.staged, deployment=None, retriever=None)
        await self._close_session()


@asynccontextmanager
async def start_lab(*, host: str = LOOPBACK, scratch: str, journal_window: int | None = None,
                    journal_sink: JournalSink | None = None) -> AsyncIterator[RunningLab]:
    """Start the MP (HTTPS and HTTP), the CDP/AIA server and the DC's LDAP service; always
    stop them. A long-running lab (``serve``, ``ui``) passes ``journal_window`` (and
    ``journal_sink``) so that what the servers record stays bounded in memory.

    ``scratch`` is a private temporary folder (the placeholder key lives there only while it
    is loaded).
    """
    staging = Staging()
    directory = DirectoryServer(staging)
    ldap_server: asyncio.Server | None = None
    base = _placeholder_context(scratch)

    def pick_context(sslobj: ssl.SSLObject, server_name: str | None,
                     _ctx: ssl.SSLContext) -> None:
        if server_name:
            chosen = staging.current.contexts.get(server_name.lower())
            if chosen is not None:
                sslobj.context = chosen

    base.sni_callback = pick_context
    # Quiet servers: a malformed request is answered (400) and noted in one line, never a
    # traceback on the trainer's terminal; idle keep-alive connections close after 15 s.
    server_options: dict[str, Any] = {"access_log": None, "logger": SERVER_LOG,
                                      "keepalive_timeout": 15.0, "shutdown_timeout": 1.0}
    runners: list[web.BaseRunner] = []
    running: RunningLab | None = None
    try:
        ports: list[int] = []
        try:
            servers: list[tuple[web.BaseRunner, ssl.SSLContext | None]] = [
                (AnyMethodRunner(make_mp_app(staging, secure=True), **server_options), base),
                (AnyMethodRunner(make_mp_app(staging, secure=False), **server_options), None),
                (AnyMethodRunner(make_cdp_app(staging), **server_options), None),
            ]
            for runner, ssl_context in servers:
                await runner.setup()
                runners.append(runner)
                # A deep listen queue: a fleet of clients connecting at once is queued, not
                # dropped and retried (aiohttp's default is 128).
                site = web.TCPSite(runner, host, 0, ssl_context=ssl_context, backlog=1024)
                await site.start()
                ports.append(runner.addresses[-1][1])
            ldap_server = await asyncio.start_server(directory.handle, host, 0, backlog=1024)
            ports.append(ldap_server.sockets[0].getsockname()[1])
        except OSError as e:
            raise HarnessError(f"cannot start the lab's servers on {host}: {e}") from e
        running = RunningLab(Ports(*ports), staging, mp_tls=base,
                             journal_window=journal_window, journal_sink=journal_sink)
        yield running
    finally:
        if running is not None:
            await running.close()
        if ldap_server is not None:
            ldap_server.close()
            await directory.aclose()
            await ldap_server.wait_closed()
        for runner in reversed(runners):
            await runner.cleanup()
