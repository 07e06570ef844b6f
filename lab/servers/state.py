"""What the servers serve, as one immutable object swapped whole when a scenario is staged.

:meth:`lab.servers.harness.RunningLab.stage` builds a new :class:`Staged` (the deployment,
its host map, the MP's TLS contexts, the MP's CRL retriever, fresh journals) and makes it
current with one assignment to :attr:`Staging.current`. Every server reads
:attr:`Staging.current` once per request (or LDAP PDU) and answers from that object, so a
request never sees half of one scenario and half of the next.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections import deque
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from lab.cryptoapi.retrieval import Retriever
from lab.protocols.network import HostMap
from lab.results.logline import LogLine
from lab.results.records import DirectoryRecord, MpRecord
from lab.scenario.model import Faults
from lab.servers.deployment import Deployment

T = TypeVar("T")


class Journal(deque[T]):
    """A server's journal for a long-running lab (``serve``, ``ui``): only the last ``window``
    entries stay in memory (what a console shows); ``sink``, when given, receives every entry
    as it is appended (to write it to a log file), so nothing is lost and memory stays
    bounded however many requests a client sends. A ``run`` uses plain lists: a scenario's
    size is capped at load time, and its report needs every entry."""

    def __init__(self, window: int, sink: Callable[[T], None] | None = None) -> None:
        super().__init__(maxlen=window)
        self.sink = sink

    def append(self, item: T) -> None:
        if self.sink is not None:
            self.sink(item)
        super().append(item)


JournalSink = Callable[[str, Any], None]
"""``sink(journal, entry)`` with ``journal`` one of ``"records"``, ``"log"``,
``"directory_log"``: where a long-running lab writes what it no longer keeps in memory."""

CERT_VERDICTS_KEPT = 10_000
"""IIS's verdicts kept per staging (one per distinct client certificate): a client that
presents a new certificate on every connection does not grow the MP without limit."""


@dataclass(frozen=True)
class ClientCertVerdict:
    status: int
    substatus: int
    win32_status: int
    detail: str
    simulated_ms: int = 0
    """Simulated time IIS spent retrieving the certificate's CRLs (its retrieval time-outs)."""
    until: dt.datetime | None = None
    """The verdict holds until this lab time (a CRL is published or expires, the certificate
    expires); None = for the whole run."""
    crl_problem: str = ""
    """As :attr:`lab.results.records.MpRecord.crl_problem`."""


@dataclass(frozen=True, eq=False)
class Staged:
    """One scenario as the running servers serve it (``deployment`` None: nothing staged).

    No field is reassigned once it is current. The last six are the journals of this
    staging: fresh containers that the servers append to while it is current."""

    deployment: Deployment | None = None
    hosts: HostMap = field(default_factory=HostMap)
    """Where each of the scenario's names answers: ``(host, port)`` -> loopback port."""
    contexts: Mapping[str, ssl.SSLContext] = field(
        default_factory=lambda: MappingProxyType({}))
    """The MP's TLS context per server name (SNI)."""
    retriever: Retriever | None = None
    """How the MP (IIS) fetches the CRLs of client certificates."""
    active_faults: tuple[str, ...] = ()
    """The scenario's active fault knobs (``name=value``), logged once at staging."""
    records: MutableSequence[MpRecord] = field(default_factory=list)
    """What the MP's IIS logged (one record per request), for the W3C log."""
    log: MutableSequence[LogLine] = field(default_factory=list)
    """The MP's own log lines (MP_RegistrationManager.log)."""
    cdp_records: MutableSequence[MpRecord] = field(default_factory=list)
    """What the CDP web server's IIS logged (one record per request), for its W3C log."""
    directory_log: MutableSequence[DirectoryRecord] = field(default_factory=list)
    """Every LDAP operation the DC answered (bind, search, unbind, ...) and every PDU refused."""
    cert_cache: dict[bytes, ClientCertVerdict] = field(default_factory=dict)
    """IIS's verdict per client certificate (DER), like its CRL cache: one check per run."""
    cert_checks: dict[bytes, asyncio.Future[ClientCertVerdict]] = field(default_factory=dict)
    """Client-certificate checks in progress, shared by concurrent requests."""

    @property
    def faults(self) -> Faults | None:
        return self.deployment.faults if self.deployment is not None else None

    def records_for(self, step: str) -> list[MpRecord]:
        return [r for r in self.records if r.step == step]


class Staging:
    """The one reference the servers share: :attr:`current` is what they serve now."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = Staged()
