"""Mutable state the server applications share with the harness."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from lab.cryptoapi.retrieval import Retriever
from lab.results.logline import LogLine
from lab.results.records import DirectoryRecord, MpRecord
from lab.servers.deployment import Deployment


@dataclass
class CdpState:
    deployment: Deployment | None = None


@dataclass
class DirectoryState:
    """The DC's LDAP service: the staged deployment (its directory and faults) and the
    operations answered since it was staged."""

    deployment: Deployment | None = None
    log: list[DirectoryRecord] = field(default_factory=list)
    """Every LDAP operation answered (bind, search, unbind, ...) and every PDU refused."""


@dataclass
class ClientCertVerdict:
    status: int
    substatus: int
    win32_status: int
    detail: str
    simulated_ms: int = 0
    """Simulated time IIS spent retrieving the certificate's CRLs (its retrieval time-outs)."""


@dataclass
class MpState:
    deployment: Deployment | None = None
    retriever: Retriever | None = None
    """How the MP (IIS) fetches the CRLs of client certificates."""
    contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    """The MP's TLS context per server name (SNI) for the staged deployment."""
    records: list[MpRecord] = field(default_factory=list)
    """What the MP's IIS logged (one record per request), for the W3C log."""
    log: list[LogLine] = field(default_factory=list)
    """The MP's own log lines (MP_RegistrationManager.log)."""
    cert_cache: dict[bytes, ClientCertVerdict] = field(default_factory=dict)
    """IIS's verdict per client certificate (DER), like its CRL cache: one check per run."""
    cert_checks: dict[bytes, asyncio.Future[ClientCertVerdict]] = field(default_factory=dict)
    """Client-certificate checks in progress, shared by concurrent requests."""

    def records_for(self, step: str) -> list[MpRecord]:
        return [r for r in self.records if r.step == step]
