"""What was judged, as plain data: one step's result, as the judge (:mod:`lab.judge`) made it
from what the step saw, with its explanation and fix."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509

from lab.codes import Code
from lab.results.logline import LogLine
from lab.results.observations import OpenSslJudgement, RevocationResult
from lab.scenario.timeline import format_offset


@dataclass
class StepResult:
    client: str
    index: int
    action: str
    location: str
    target: str | None
    outcome: str
    expected: str | None
    met: bool
    error: Code | None
    error_message: str
    winhttp_error: Code | None
    flags: int
    http_status: str | None
    openssl: OpenSslJudgement | None
    revocation: RevocationResult | None
    connection: str
    mp: str | None
    crl_check: bool | None
    crl_source: str
    options: int | None
    explanation: str
    fix: str
    identifiers: list[str]
    log: list[LogLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    simulated_ms: int = 0
    chain: tuple[x509.Certificate, ...] = ()
    """The server's chain as CryptoAPI built it (end entity first), when a handshake happened."""
    log_refs: list[str] = field(default_factory=list)
    """``path:line`` of the log lines to look at, filled in when logs are written."""
    at: dt.datetime | None = None
    """The lab time the step started (UTC)."""
    since_start: dt.timedelta | None = None
    """How long after the scenario's start the step started (``at`` minus the start)."""
    automatic: bool = False
    """Run by the client on its own, not by a step of the scenario: ccmexec's start-up work
    after a successful install (registration, then a site refresh). It has no expectation
    (``met`` is always True) and ``index`` is the install step's; see :attr:`number`."""
    sub: str = ""
    """``a``, ``b``, ... for the automatic steps after scenario step ``index``; empty for a
    step of the scenario."""
    followups: list[StepResult] = field(default_factory=list, repr=False)
    """The automatic steps this step set off (after a successful install: ccmexec's
    registration and site refresh), in order; they are also in the client's results."""

    @property
    def when(self) -> str:
        """The step's time as reports show it: ``+8d 00:00:01 (2026-12-15 10:00:01Z)``."""
        if self.at is None or self.since_start is None:
            return ""
        return f"{format_offset(self.since_start)} ({self.at:%Y-%m-%d %H:%M:%S}Z)"

    @property
    def judges_agree(self) -> bool | None:
        return None if self.openssl is None else self.openssl.agrees

    @property
    def number(self) -> str:
        """The step's number as reports print it: ``3`` for the scenario's third step, ``3a``
        and ``3b`` for the automatic steps that followed it."""
        return f"{self.index + 1}{self.sub}"

    @property
    def title(self) -> str:
        """The action, and for an automatic step why it ran: ``register (automatic, ccmexec
        start-up)``."""
        return f"{self.action} ({AUTOMATIC_WHY})" if self.automatic else self.action

    @property
    def name(self) -> str:
        return f"{self.number}-{self.action}@{self.location}"


AUTOMATIC_WHY = "automatic, ccmexec start-up"
"""How reports mark a step the client ran on its own after a successful install."""


__all__ = ["AUTOMATIC_WHY", "StepResult", "format_offset"]
