"""URL retrieval as CryptoAPI does it for CDP and AIA URLs, over the simulated network.

HTTP URLs are fetched with a real HTTP GET (aiohttp, through the zone-aware resolver) from
the lab's CDP server. ``ldap://`` URLs are fetched over a real LDAP connection (bind, search,
unbind: :mod:`lab.cryptoapi.ldap`) from the lab's directory server, but only when the machine
could reach it: a hostless ``ldap:///`` URL needs a domain controller of the machine's own
domain (domain-joined, inside), and the serverless bind goes to that DC (``DC01.<domain>``);
``ldap://host/`` needs ``host`` to resolve from the machine's zone. A URL that cannot be
reached costs the per-URL retrieval time-out (15 s by default, reference §5.1) in *simulated*
time; so does a server slower than the time-out (the ``cdp_delay`` and ``ldap_delay``
faults, whose delays the servers report and nothing sleeps).

With a :class:`~lab.cryptoapi.urlcache.UrlCache` (every machine of the lab has one) a URL is
looked up in the machine's memory and disk cache first, at the machine's own time, and only
then retrieved (reference §5.2b); :attr:`Retrieval.origin` says which.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import aiohttp
from cryptography import x509

from lab import codes
from lab.codes import Code
from lab.cryptoapi.ldap import ldap_search
from lab.errors import LdapProtocolError
from lab.pki.urls import ParsedUrl, parse_url
from lab.protocols.network import LOOPBACK, SIMULATED_DELAY_HEADER, Machine, Network, read_bounded

if TYPE_CHECKING:
    from lab.cryptoapi.urlcache import UrlCache

RETRIEVAL_TIMEOUT_MS = 15_000
"""CERT_CHAIN_URL_RETRIEVAL_TIMEOUT_MILLISECONDS_DEFAULT (reference §5.1)."""
ACCUMULATIVE_TIMEOUT_MS = 20_000
"""CERT_CHAIN_REV_ACCUMULATIVE_URL_RETRIEVAL_TIMEOUT_MILLISECONDS_DEFAULT: with
CERT_CHAIN_REVOCATION_ACCUMULATIVE_TIMEOUT each URL times out after half of what remains
(10 s, 5 s, 2.5 s, ...), 20 s in all (reference §5.1)."""

DOUBLE_ESCAPING_HINT = (" (the path has a '+': IIS request filtering refuses it with 404.11 "
                        "unless allowDoubleEscaping is on)")
"""Why a 404 on a ``+`` URL is likely IIS's double-escaping filter (reference §8.4): the
client sees only 404, the substatus is in the server's log."""

MAX_CRL_BYTES = 16 * 1024 * 1024
MAX_LDAP_PDU = MAX_CRL_BYTES + 64 * 1024
"""The largest LDAP response read: a CRL of MAX_CRL_BYTES with its DN and envelope."""


class HostPorts(Protocol):
    def get(self, host: str, port: int) -> int | None: ...


@dataclass(frozen=True)
class Retrieval:
    """The outcome of fetching one URL."""

    url: str
    data: bytes | None
    """The bytes retrieved, or None when retrieval failed."""
    error: Code | None
    """The retrieval error as certutil prints it (``0x80072ee7``), None on success."""
    detail: str
    """What happened, in words, naming the zone rule that decided it."""
    simulated_ms: int
    http_status: int | None = None
    origin: str = "network"
    """Where the bytes (or the failure) came from: ``memory`` or ``disk`` (the machine's URL
    cache, :mod:`lab.cryptoapi.urlcache`) or ``network``."""
    protocol: str = ""
    """``http`` or ``ldap`` when the bytes came over the network; empty otherwise."""

    @property
    def cached(self) -> bool:
        """Served from the machine's URL cache, not retrieved now."""
        return self.origin != "network"


def load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    """``data`` as a CRL (DER, or PEM as some CDPs serve it), None when it is not one."""
    try:
        return x509.load_der_x509_crl(data)
    except ValueError:
        try:
            return x509.load_pem_x509_crl(data)
        except ValueError:
            return None


class Retriever:
    """Fetches CDP/AIA URLs for one machine."""

    def __init__(
        self,
        network: Network,
        machine: Machine,
        hosts: HostPorts,
        session: aiohttp.ClientSession,
        *,
        timeout_ms: int = RETRIEVAL_TIMEOUT_MS,
        accumulative: bool = False,
        cache: UrlCache | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.network = network
        self.machine = machine
        self.hosts = hosts
        self.session = session
        self.timeout_ms = timeout_ms
        self.accumulative = accumulative
        self.cache = cache
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        """The machine's own time: what the cache judges validity at."""
        self._remaining_ms = ACCUMULATIVE_TIMEOUT_MS
        """One Retriever serves one chain build: the accumulative budget is per chain."""

    def _budget_ms(self) -> int:
        """How long this URL may take before CryptoAPI gives up on it."""
        return self._remaining_ms // 2 if self.accumulative else self.timeout_ms

    def _spend(self, ms: int) -> None:
        if self.accumulative:
            self._remaining_ms -= ms

    def _unreachable(self, url: str, error: Code, detail: str) -> Retrieval:
        if self.accumulative:
            spent = self._remaining_ms // 2
            self._remaining_ms -= spent
            return Retrieval(url, None, error, detail + " (accumulative time-out)", spent)
        return Retrieval(url, None, error, detail, self.timeout_ms)

    async def fetch(self, url: str) -> Retrieval:
        """``url``'s object: from the machine's URL cache when it holds a time-valid one
        (memory, then disk), else over the network (reference §5.2b)."""
        cache = self.cache
        if cache is None:
            return await self._fetch(url)
        got = cache.lookup(url, self.now())
        if got is not None:
            return got
        failed = cache.failed_earlier(url)
        if failed is not None:
            return failed
        pending = cache.pending.get(url)
        if pending is not None:
            got = await asyncio.shield(pending)
            return cache.lookup(url, self.now()) or got
        future: asyncio.Future[Retrieval] = asyncio.get_running_loop().create_future()
        cache.pending[url] = future
        expired = cache.expired(url, self.now())
        try:
            got = await self._fetch(url)
            if expired:  # why the machine went to the network at all ("it worked yesterday")
                got = replace(got, detail=f"{got.detail} ({expired}, so CryptoAPI went to the "
                              "network for it)")
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            del cache.pending[url]
        cache.store(got, self.now())
        future.set_result(got)
        return got

    async def _fetch(self, url: str) -> Retrieval:
        try:
            parsed = parse_url(url)
        except ValueError as e:
            return Retrieval(url, None, codes.CRYPT_E_NOT_FOUND, f"malformed URL: {e}", 0)
        zone = self.machine.zone
        if parsed.scheme == "ldap":
            return await self._fetch_ldap(url, parsed)
        if parsed.scheme != "http":
            return Retrieval(url, None, codes.CRYPT_E_NOT_FOUND,
                             f"{parsed.scheme}:// URLs are not retrievable in the lab "
                             "(only http:// and ldap:// are simulated)", 0)
        if not self.network.can_resolve(self.machine, parsed.host):
            rule = self.network.rule(parsed.host)
            return self._unreachable(
                url, codes.ERROR_WINHTTP_NAME_NOT_RESOLVED,
                f"{parsed.host} does not resolve from the {zone} zone ({rule.why})")
        if self.hosts.get(parsed.host, parsed.port) is None:
            return self._unreachable(
                url, codes.ERROR_WINHTTP_CANNOT_CONNECT,
                f"no web server answers for {parsed.host}:{parsed.port}")
        try:
            async with self.session.get(
                url, headers={"User-Agent": "Microsoft-CryptoAPI/10.0"}, allow_redirects=False
            ) as resp:
                delay = int(resp.headers.get(SIMULATED_DELAY_HEADER, "0") or 0)
                budget = self._budget_ms()
                if delay >= budget:
                    return self._unreachable(
                        url, codes.ERROR_WINHTTP_TIMEOUT,
                        f"{parsed.host} took {delay / 1000:g} s to answer; the retrieval "
                        f"time-out is {budget / 1000:g} s")
                body = await read_bounded(resp.content, MAX_CRL_BYTES + 1)
                if resp.status != 200:
                    why = f"HTTP {resp.status} {resp.reason}"
                    if resp.status == 404 and "+" in parsed.path:
                        why += DOUBLE_ESCAPING_HINT
                    return Retrieval(url, None, codes.CRYPT_E_NOT_FOUND, why, 0, resp.status)
                if len(body) > MAX_CRL_BYTES:
                    return Retrieval(url, None, codes.CRYPT_E_NOT_FOUND,
                                     "response larger than the lab accepts", 0, resp.status)
                if delay:
                    self._spend(delay)
                return Retrieval(url, body, None, "retrieved over HTTP"
                                 + (f" after {delay / 1000:g} s" if delay else ""), delay,
                                 resp.status, protocol="http")
        except aiohttp.ClientError as e:
            return self._unreachable(url, codes.ERROR_WINHTTP_CANNOT_CONNECT,
                                     f"connection to {parsed.host} failed: {e}")

    async def _fetch_ldap(self, url: str, parsed: ParsedUrl) -> Retrieval:
        """An ``ldap://`` URL: the network rules decide whether a DC (or the URL's host) can
        be reached; when it can, the CRL comes over a real LDAP connection."""
        zone = self.machine.zone
        if not parsed.host:
            if not self.network.can_reach_dc(self.machine):
                why = ("the machine is not domain-joined" if not self.machine.domain_joined
                       else f"no domain controller answers in the {zone} zone")
                return self._unreachable(
                    url, codes.ERROR_DS_SERVER_DOWN,
                    f"ldap:/// needs a domain controller of the machine's own domain; {why}")
            host = self.network.dc_host()
        elif not self.network.can_resolve(self.machine, parsed.host):
            rule = self.network.rule(parsed.host)
            return self._unreachable(
                url, codes.ERROR_DS_SERVER_DOWN,
                f"{parsed.host} cannot be reached from the {zone} zone ({rule.why})")
        else:
            host = parsed.host
        port = self.hosts.get(host, parsed.port)
        if port is None:
            who = "no domain controller answers LDAP" if not parsed.host \
                else f"no LDAP server answers for {host}:{parsed.port}"
            return self._unreachable(url, codes.ERROR_DS_SERVER_DOWN,
                                     f"{who} (the directory is down: ldap_down)")
        where = f"{host} ({LOOPBACK}:{port})"
        try:
            answer = await ldap_search(LOOPBACK, port, parsed.path, parsed.attribute,
                                       scope=parsed.scope, filter_text=parsed.filter,
                                       limit=MAX_LDAP_PDU)
        except (OSError, TimeoutError, LdapProtocolError) as e:
            return self._unreachable(url, codes.ERROR_DS_SERVER_DOWN,
                                     f"LDAP to {where} failed: {e}")
        budget = self._budget_ms()
        if answer.delay_ms >= budget:
            return self._unreachable(
                url, codes.ERROR_TIMEOUT,
                f"{where} took {answer.delay_ms / 1000:g} s to answer the LDAP search; the "
                f"retrieval time-out is {budget / 1000:g} s")
        if answer.delay_ms:
            self._spend(answer.delay_ms)
        if answer.code != 0 or not answer.values:
            what = parsed.attribute or "value"
            why = (f"{answer.result}" + (f": {answer.diagnostic}" if answer.diagnostic else "")
                   if answer.code != 0 else
                   "the object does not match the URL's filter" if not answer.entries else
                   f"the object has no {what}")
            return Retrieval(url, None, codes.CRYPT_E_NOT_FOUND,
                             f"no {what} at {parsed.path} (LDAP from {where}: {why})",
                             answer.delay_ms, protocol="ldap")
        after = f" after {answer.delay_ms / 1000:g} s" if answer.delay_ms else ""
        return Retrieval(url, answer.values[0], None, f"retrieved over LDAP from {where}{after}",
                         answer.delay_ms, protocol="ldap")
