"""The client's HTTP stack, with WinHTTP's order of events and CryptoAPI's judgement.

For an HTTPS request:

1. the name is resolved through the zone rules (ERROR_WINHTTP_NAME_NOT_RESOLVED otherwise);
2. a real TLS handshake is made with ``server_hostname`` = the FQDN in the URL and the
   client certificate presented; the server's certificate is taken as SChannel hands it
   to CryptoAPI;
3. the Windows-semantics engine builds the chain, applies the SSL policy (trust, dates,
   usage, name) and, when CRL checking is on, checks revocation with real CRL retrievals;
   any problem fails the request with ERROR_WINHTTP_SECURE_FAILURE and its flags;
4. the second judge: OpenSSL verifies the same server over a second real handshake (the
   client certificate presented again) with an ``SSLContext`` holding exactly the CRLs the
   client could retrieve (``VERIFY_CRL_CHECK_LEAF`` when CRL checking applies), at the
   client's own time, the instant the engine judged at (``clock_skew`` included; see
   :mod:`lab.client.tlstime`); if it disagrees with the engine the result says so;
5. only when the engine accepts the certificate is the HTTP request sent (over the OpenSSL
   judge's connection) and the status read. The engine's verdict is the outcome: when OpenSSL
   refuses a certificate the engine accepted, the refusal is recorded as a disagreement
   (``agrees`` false) and the request is sent over a connection without OpenSSL's checks,
   as WinHTTP would have sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import ssl
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import codes
from lab.client.tlstime import VERIFY_TIME, ClientTimeContext
from lab.clock import Clock
from lab.cryptoapi.chain import build_chain, policy_problems, revocation_problems
from lab.cryptoapi.retrieval import Retriever
from lab.cryptoapi.revocation import check_chain
from lab.cryptoapi.urlcache import UrlCache
from lab.pki.urls import cert_aia_urls
from lab.protocols.network import LOOPBACK, Machine, Network
from lab.results.observations import (
    ChainVerdict,
    HttpOutcome,
    OpenSslJudgement,
    RevocationResult,
)

if TYPE_CHECKING:
    from lab.cryptoapi.retrieval import HostPorts

HANDSHAKE_TIMEOUT = 10.0
REQUEST_MS = 40
"""Simulated time one request takes on the lab's network (for realistic log time stamps)."""

OPENSSL_CATEGORIES = {
    0: "ok",
    2: "trust", 18: "trust", 19: "trust", 20: "trust", 21: "trust",
    3: "offline", 8: "offline", 11: "offline", 12: "offline", 33: "offline", 35: "offline",
    23: "revoked",
    9: "date", 10: "date",
    26: "usage",
    62: "name",
    7: "signature",
}
"""OpenSSL verify codes (docs/openssl-certutil.md §5) mapped to the engine's vocabulary."""


@dataclass(frozen=True)
class ClientCertFiles:
    cert_path: Path
    key_path: Path

    def identity(self) -> tuple[object, ...]:
        """What the files hold, as far as a context built from them goes: their paths and
        stat identity (a rewritten file is a new identity)."""
        out: list[object] = []
        for path in (self.cert_path, self.key_path):
            st = os.stat(path)
            out.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)


class _SharedContexts:
    """TLS contexts shared by every client of the process, least recently used dropped.

    Building a context (parsing the trust store, loading a key) costs as much as a
    handshake; the matrix's rows give the same certificate files to many clients. A context
    holds only configuration: every handshake made with it is new.
    """

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[tuple[object, ...], ssl.SSLContext] = OrderedDict()

    def get(self, key: tuple[object, ...]) -> ssl.SSLContext | None:
        ctx = self._items.get(key)
        if ctx is not None:
            self._items.move_to_end(key)
        return ctx

    def put(self, key: tuple[object, ...], ctx: ssl.SSLContext) -> None:
        self._items[key] = ctx
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


_SHARED = _SharedContexts()


class WinHttp:
    """One machine's HTTP stack (see the module docstring)."""

    def __init__(self, *, machine: Machine, network: Network, hosts: HostPorts,
                 anchors: tuple[x509.Certificate, ...],
                 trust_pem: bytes, client_cert: ClientCertFiles | None, clock: Clock,
                 scratch: Path, session: aiohttp.ClientSession,
                 intermediates: tuple[x509.Certificate, ...] = (),
                 url_retrieval: str = "per-url") -> None:
        self.intermediates = intermediates
        """Issuing CAs the server sends with its certificate (Python 3.11 cannot read a
        peer's chain, so the lab hands them over, as IIS would have sent them)."""
        self.url_retrieval = url_retrieval
        self.skew = dt.timedelta(0)
        """How far the machine's clock is off: it judges dates by its own clock."""
        self.machine = machine
        self.network = network
        self.hosts = hosts
        self.anchors = anchors
        self.trust_pem = trust_pem
        self.client_cert = client_cert
        self.clock = clock
        self.scratch = scratch
        self.session = session
        self.url_cache = UrlCache(remember_failures=True)
        """The machine's CryptoAPI URL cache (memory and disk, reference §5.2b): it outlives
        chain builds and steps, as the machine does."""

    def machine_now(self) -> dt.datetime:
        return self.clock.now() + self.skew

    def retriever(self, offset: dt.timedelta = dt.timedelta(0)) -> Retriever:
        """A retriever for one chain build, through the machine's URL cache (``offset``:
        a build at another time than now, for a cache filled earlier)."""
        return Retriever(self.network, self.machine, self.hosts, self.session,
                         accumulative=self.url_retrieval == "accumulative",
                         cache=self.url_cache, now=lambda: self.machine_now() + offset)

    async def fill_url_cache(self, host: str, port: int, offset: dt.timedelta) -> list[str]:
        """Fill the URL cache as a chain check of ``host``'s certificate from where the
        machine is now would have, ``offset`` from now (a scenario's starting cache): the
        real handshake, the AIA and CDP retrievals through the lab's servers, no clock moved.
        Returns what happened, as notes."""
        when = self.machine_now() + offset
        stamp = f"{when:%Y-%m-%d %H:%M}"
        loopback_port = self.hosts.get(host, port)
        if not self.network.can_resolve(self.machine, host) or loopback_port is None:
            return [f"Lab: the URL cache stays empty: {host}:{port} cannot be reached from the "
                    f"{self.machine.zone} zone to fill it"]
        try:
            leaf = await self._peer_certificate(loopback_port, host, present_cert=False)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            return [f"Lab: the URL cache stays empty: no TLS handshake with {host}: {e}"]
        retriever = self.retriever(offset)
        pool = list(self.intermediates)
        if not any(a.subject == leaf.issuer for a in (*self.anchors, *pool)):
            pool += await self._aia_pool(leaf, retriever)
        chain, _trusted = build_chain(leaf, self.anchors, pool)
        revocation = await check_chain(chain, retriever, when) if len(chain) > 1 else None
        # Filled before the agent ran: what stays is the disk cache (CryptnetUrlCache); the
        # agent's process starts with an empty memory cache.
        self.url_cache.begin_step()
        self.url_cache.drop_memory()
        kept = sorted(self.url_cache.disk)
        tried = [u.url for u in revocation.urls if u.result != "not_tried"] \
            if revocation is not None else []
        notes = [f"Lab: URL cache filled on the {self.machine.zone} at {stamp} (machine time) "
                 f"by a chain check of {host}'s certificate: {len(kept)} object(s) in the disk "
                 "cache"
                 + (f" ({', '.join(kept)})" if kept else "")]
        missed = [u for u in tried if u not in kept]
        if missed:
            notes.append(f"Lab: not cached (failed or not time-valid then): {', '.join(missed)}")
        return notes

    # -- TLS contexts -------------------------------------------------------------------------
    def _schannel_context(self, present_cert: bool = True) -> ssl.SSLContext:
        """The handshake that hands the server certificate to CryptoAPI (no OpenSSL checks).
        Built once per client certificate (a context is reusable; each handshake is new)."""
        files = self.client_cert if present_cert else None
        key = ("schannel", files.identity() if files is not None else None)
        cached = _SHARED.get(key)
        if cached is not None:
            return cached
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if files is not None:
            ctx.load_cert_chain(files.cert_path, files.key_path)
        _SHARED.put(key, ctx)
        return ctx

    def _openssl_context(self, crls: tuple[x509.CertificateRevocationList, ...],
                         crl_check: bool, chain_length: int = 2,
                         present_cert: bool = True) -> ssl.SSLContext:
        """The OpenSSL judge's context: the client's trust store, exactly the CRLs it
        retrieved. Built once per distinct set of inputs and reused by later steps."""
        crl_ids = tuple(c.fingerprint(hashes.SHA256()) for c in crls) if crl_check else ()
        files = self.client_cert if present_cert else None
        key = ("openssl", files.identity() if files is not None else None, self.trust_pem,
               crl_check, chain_length > 2, crl_ids)
        cached = _SHARED.get(key)
        if cached is not None:
            return cached
        # create_default_context's client context, as a ClientTimeContext: it verifies at the
        # client's time (VERIFY_TIME) rather than the system's.
        ctx = ClientTimeContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.trust_pem.decode())
        if files is not None:
            ctx.load_cert_chain(files.cert_path, files.key_path)
        if crl_check:
            # Windows checks every element below the root; OpenSSL's CHECK_CHAIN also wants
            # the root covered, which the root's own CRL (fetched for the issuing CA) does.
            ctx.verify_flags |= (ssl.VERIFY_CRL_CHECK_CHAIN if chain_length > 2
                                 else ssl.VERIFY_CRL_CHECK_LEAF)
            if crls:
                pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)
                fd, path = tempfile.mkstemp(dir=self.scratch, suffix=".crl.pem")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(pem)
                    ctx.load_verify_locations(cafile=path)
                finally:
                    os.unlink(path)
        _SHARED.put(key, ctx)
        return ctx

    # -- the request ------------------------------------------------------------------------
    async def request(self, method: str, url: str, *, crl_check: bool, body: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      present_cert: bool = True) -> HttpOutcome:
        """One request (see the module docstring); ``present_cert=False`` is a browser that
        offers no computer certificate."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = (parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]) or (parts.hostname or "")
        port = parts.port or (443 if secure else 80)
        self.clock.advance(REQUEST_MS)
        out = HttpOutcome(method, url, host, port, secure, crl_check and secure)
        out.present_cert = present_cert
        if not self.network.can_resolve(self.machine, host):
            rule = self.network.rule(host)
            out.connect_error = codes.ERROR_WINHTTP_NAME_NOT_RESOLVED
            out.connect_detail = (f"{host} does not resolve from the {self.machine.zone} zone "
                                  f"({rule.why})")
            return out
        loopback_port = self.hosts.get(host, port)
        if loopback_port is None:
            out.connect_error = codes.ERROR_WINHTTP_CANNOT_CONNECT
            out.connect_detail = f"nothing listens on {host}:{port}"
            return out
        if secure:
            ok = await self._judge_server(out, loopback_port)
            if not ok:
                return out
            assert out.verdict is not None
            context: ssl.SSLContext | bool = self._openssl_context(
                out.verdict.revocation.crls, out.crl_check, len(out.verdict.chain),
                out.present_cert)
        else:
            context = False
        token = VERIFY_TIME.set(out.verified_at)
        try:
            await self._send(out, method, url, body, headers, context)
        except aiohttp.ClientConnectorCertificateError as e:
            # The engine accepted the certificate but OpenSSL did not: a disagreement between
            # the lab's two judges, not something WinHTTP would report. Record it, and send
            # the request as WinHTTP would have (the engine's verdict is the outcome).
            err = e.certificate_error
            code = getattr(err, "verify_code", -1)
            out.openssl = OpenSslJudgement(code, str(getattr(err, "verify_message", err)),
                                           OPENSSL_CATEGORIES.get(code, "other"), False)
            try:
                await self._send(out, method, url, body, headers,
                                 self._schannel_context(present_cert))
            except (TimeoutError, aiohttp.ClientError) as e2:
                out.connect_error = codes.ERROR_WINHTTP_CANNOT_CONNECT
                out.connect_detail = f"the connection failed: {e2}"
        except (TimeoutError, aiohttp.ClientError) as e:
            out.connect_error = codes.ERROR_WINHTTP_CANNOT_CONNECT
            out.connect_detail = f"the connection failed: {e}"
        else:
            if secure and out.openssl is None:
                out.openssl = OpenSslJudgement(0, "ok", "ok", True)
        finally:
            VERIFY_TIME.reset(token)
        return out

    async def _send(self, out: HttpOutcome, method: str, url: str, body: bytes | None,
                    headers: dict[str, str] | None, context: ssl.SSLContext | bool) -> None:
        async with self.session.request(method, url, data=body, headers=headers,
                                        ssl=context, allow_redirects=False) as resp:
            out.status = resp.status
            out.reason = resp.reason
            out.body = await resp.read()

    async def _peer_certificate(self, loopback_port: int, host: str,
                                present_cert: bool = True) -> x509.Certificate:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a Ctrl-C that
        # arrives just as the handshake completes.
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            _reader, writer = await asyncio.open_connection(
                LOOPBACK, loopback_port, ssl=self._schannel_context(present_cert),
                server_hostname=host)
        try:
            sslobj = writer.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        if not der:
            raise ssl.SSLError("the server sent no certificate")
        return x509.load_der_x509_certificate(der)

    async def _aia_pool(self, leaf: x509.Certificate, retriever: Retriever
                        ) -> list[x509.Certificate]:
        """Fetch issuers the machine does not hold through the certificate's AIA URLs."""
        pool: list[x509.Certificate] = []
        for url in cert_aia_urls(leaf):
            got = await retriever.fetch(url)
            if got.data is None:
                continue
            try:
                pool.append(x509.load_der_x509_certificate(got.data))
                break
            except ValueError:
                continue
        return pool

    async def _judge_server(self, out: HttpOutcome, loopback_port: int) -> bool:
        try:
            leaf = await self._peer_certificate(loopback_port, out.host, out.present_cert)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            out.connect_error = codes.ERROR_WINHTTP_SECURE_FAILURE
            out.connect_detail = f"the TLS handshake failed: {e}"
            return False
        now = self.machine_now()
        out.verified_at = now
        retriever = self.retriever()
        pool = list(self.intermediates)
        if not any(a.subject == leaf.issuer for a in (*self.anchors, *pool)):
            pool += await self._aia_pool(leaf, retriever)
        chain, trusted = build_chain(leaf, self.anchors, pool)
        problems = policy_problems(chain, trusted, now=now, host=out.host,
                                   usage=ExtendedKeyUsageOID.SERVER_AUTH)
        revocation = RevocationResult(checked=False)
        if out.crl_check and len(chain) > 1:
            revocation = await check_chain(chain, retriever, now)
            problems += revocation_problems(revocation)
        out.verdict = ChainVerdict(tuple(chain), tuple(problems), revocation)
        out.simulated_ms += revocation.simulated_ms
        self.clock.advance(revocation.simulated_ms)
        if out.verdict.ok:
            return True
        out.openssl = await self._openssl_only(out, loopback_port)
        return False

    async def _openssl_only(self, out: HttpOutcome, loopback_port: int) -> OpenSslJudgement:
        """OpenSSL's verdict on a server the engine refused (handshake only, no request)."""
        assert out.verdict is not None
        ctx = self._openssl_context(out.verdict.revocation.crls, out.crl_check,
                                    len(out.verdict.chain), out.present_cert)
        token = VERIFY_TIME.set(out.verified_at)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                _reader, writer = await asyncio.open_connection(
                    LOOPBACK, loopback_port, ssl=ctx, server_hostname=out.host)
        except ssl.SSLCertVerificationError as e:
            category = OPENSSL_CATEGORIES.get(e.verify_code, "other")
            return OpenSslJudgement(e.verify_code, e.verify_message, category,
                                    category in out.verdict.categories)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            return OpenSslJudgement(-1, f"handshake failed: {e}", "other", False)
        finally:
            VERIFY_TIME.reset(token)
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        # OpenSSL accepted: that agrees only if every problem is one it does not look for.
        return OpenSslJudgement(0, "ok", "ok", not out.verdict.openssl_visible)
