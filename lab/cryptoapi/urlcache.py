"""CryptoAPI's URL cache, per machine: a memory tier and a disk tier (reference §5.2, §5.2b).

Every Windows machine of the lab (each client, and the MP's IIS) keeps the CRLs, delta CRLs
and AIA certificates it retrieved. A lookup goes memory -> disk -> network, and takes only
an object that is time-valid at the machine's own time (its clock, ``clock_skew``
included):

* a CRL (base or delta) from its thisUpdate until its **nextUpdate** (reference §5.2);
* an AIA certificate until its notAfter (the lab's assumption: the reference is silent on
  how long a cached issuer certificate is used).

A disk hit is copied into memory (the process keeps what it found, reference §5.2b); a
network retrieval goes into both tiers (CryptRetrieveObjectByUrl keeps one disk cache of
what it downloaded). Nothing that failed, did not parse or is not time-valid is kept.

The ways an admin empties it (reference §5.2b):

* ``certutil -urlcache * delete`` deletes the **disk** tier only: a running process still
  has its memory copy (:meth:`UrlCache.delete_disk`);
* restarting the process (for a ConfigMgr client: the SMS Agent Host service, ccmexec)
  empties the **memory** tier only (:meth:`UrlCache.drop_memory`);
* ``certutil -setreg chain\\ChainCacheResyncFiletime @now``: objects cached before that
  moment are no longer used from either tier (:meth:`UrlCache.resync`; the lab's reading of
  "forces a re-sync").

One more thing the lab assumes (no source found): a URL that **failed** earlier in the same
step is not retrieved again in that step, it fails at once (``remember_failures``; a step
starts with :meth:`UrlCache.begin_step`). Windows' pre-fetching of a cached CRL before it
expires is not modelled (reference §5.2b).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from dataclasses import dataclass, replace

from cryptography import x509

from lab.cryptoapi.retrieval import Retrieval, load_crl


class Origin(enum.StrEnum):
    """Where the bytes of one URL attempt came from."""

    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"


@dataclass(frozen=True)
class CachedObject:
    """One URL's object in one tier."""

    retrieval: Retrieval
    kind: str
    """``CRL`` or ``certificate``."""
    valid_from: dt.datetime | None
    expires: dt.datetime | None
    """nextUpdate of a CRL, notAfter of a certificate; None: no end (a CRL without one)."""
    stored_at: dt.datetime
    """The machine's time when it was retrieved from the network."""

    def valid_at(self, now: dt.datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.expires is None or now < self.expires


def describe(data: bytes) -> tuple[str, dt.datetime | None, dt.datetime | None] | None:
    """``(kind, valid from, expires)`` of bytes worth caching, None when they are neither a
    CRL nor a certificate."""
    crl = load_crl(data)
    if crl is not None:
        return "CRL", crl.last_update_utc, crl.next_update_utc
    try:
        cert = x509.load_der_x509_certificate(data)
    except ValueError:
        return None
    return "certificate", cert.not_valid_before_utc, cert.not_valid_after_utc


class UrlCache:
    """One machine's URL cache (see the module docstring). Keyed by URL; validity is judged
    at the time passed in, so it stays right when the lab's clock jumps days."""

    def __init__(self, *, remember_failures: bool = False) -> None:
        self.memory: dict[str, CachedObject] = {}
        self.disk: dict[str, CachedObject] = {}
        self.remember_failures = remember_failures
        self._failed: dict[str, Retrieval] = {}
        self.resynced_at: dt.datetime | None = None
        """When ChainCacheResyncFiletime was last set (everything cached before is gone)."""
        self.pending: dict[str, asyncio.Future[Retrieval]] = {}
        """Retrievals under way: a second chain build that needs the URL meanwhile waits
        for this one instead of retrieving it again."""

    # -- lookups ------------------------------------------------------------------------------
    @staticmethod
    def _usable(entry: CachedObject | None, now: dt.datetime) -> bool:
        return entry is not None and entry.valid_at(now)

    def lookup(self, url: str, now: dt.datetime) -> Retrieval | None:
        """The time-valid object for ``url``: from memory, else from disk (copied into
        memory), else None (go to the network)."""
        entry = self.memory.get(url)
        origin = Origin.MEMORY
        if not self._usable(entry, now):
            entry = self.disk.get(url)
            origin = Origin.DISK
            if not self._usable(entry, now):
                return None
            assert entry is not None
            self.memory[url] = entry
        assert entry is not None
        until = (f"until its {'nextUpdate' if entry.kind == 'CRL' else 'notAfter'} "
                 f"{entry.expires:%Y-%m-%d %H:%M}" if entry.expires else "with no end date")
        where = "memory cache" if origin is Origin.MEMORY else "disk cache (CryptnetUrlCache)"
        return replace(entry.retrieval, simulated_ms=0, origin=origin, protocol="", detail=(
            f"from the {where}: the {entry.kind} retrieved {entry.stored_at:%Y-%m-%d %H:%M} "
            f"is kept {until}"))

    def expired(self, url: str, now: dt.datetime) -> str:
        """Why ``url`` goes to the network although the machine had it cached: ``"the CRL
        retrieved 2026-12-07 10:00 and cached until its nextUpdate 2026-12-14 22:00 has
        expired"``; empty when no tier holds an object for it that is no longer valid."""
        entry = self.memory.get(url) or self.disk.get(url)
        if entry is None or entry.valid_at(now) or entry.expires is None or now < entry.expires:
            return ""
        end = "nextUpdate" if entry.kind == "CRL" else "notAfter"
        return (f"the {entry.kind} retrieved {entry.stored_at:%Y-%m-%d %H:%M} and cached until "
                f"its {end} {entry.expires:%Y-%m-%d %H:%M} has expired")

    def failed_earlier(self, url: str) -> Retrieval | None:
        """A failure of ``url`` earlier in this step, as the next attempt reports it (at
        once, no time-out): the lab's assumption."""
        got = self._failed.get(url)
        if got is None:
            return None
        return replace(got, simulated_ms=0, origin=Origin.MEMORY, protocol="", detail=(
            f"failed earlier in this step ({got.detail}); Lab: not retrieved again in the "
            "same step (the lab's assumption)"))

    # -- filling ------------------------------------------------------------------------------
    def store(self, got: Retrieval, now: dt.datetime) -> bool:
        """Keep what the network gave, in both tiers, when it is time-valid at ``now``;
        remember a failure for the rest of the step. True when it was kept."""
        if got.data is None:
            if self.remember_failures:
                self._failed[got.url] = got
            return False
        about = describe(got.data)
        if about is None:
            return False
        kind, valid_from, expires = about
        entry = CachedObject(replace(got, origin=Origin.NETWORK), kind, valid_from, expires,
                             now)
        if not entry.valid_at(now):
            return False
        self.memory[got.url] = entry
        self.disk[got.url] = entry
        return True

    def begin_step(self) -> None:
        """A new step: failures of the previous one are forgotten."""
        self._failed.clear()

    # -- what an admin does -------------------------------------------------------------------
    def delete_disk(self) -> int:
        """``certutil -urlcache * delete``: the disk tier only. Returns how many went."""
        n = len(self.disk)
        self.disk.clear()
        return n

    def drop_memory(self) -> int:
        """The process restarts (SMS Agent Host): the memory tier only."""
        n = len(self.memory)
        self.memory.clear()
        self._failed.clear()
        return n

    def resync(self, now: dt.datetime) -> int:
        """``certutil -setreg chain\\ChainCacheResyncFiletime @now``: nothing cached before
        ``now`` is used again. Returns how many objects that concerns."""
        self.resynced_at = now
        n = len(self)
        self.memory.clear()
        self.disk.clear()
        self._failed.clear()
        return n

    def __len__(self) -> int:
        return len({*self.memory, *self.disk})


__all__ = ["CachedObject", "Origin", "UrlCache", "describe"]
