"""What a client step saw, as plain data: the revocation check, the chain verdict, each HTTP
request, and the step as a whole.

The client (:mod:`lab.client`) and CryptoAPI (:mod:`lab.cryptoapi`) fill these in; the judge
(:mod:`lab.judge`) turns a :class:`StepObservation` into a result; the reports read them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from cryptography import x509

from lab import codes
from lab.codes import Code, WinHttpFlag
from lab.results.logline import LogLine
from lab.scenario.model import Action, Zone

# -- revocation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlAttempt:
    """One CDP URL of one certificate, as the retrieval trace shows it."""

    url: str
    result: str
    """``verified``, ``expired``, ``not_yet_valid``, ``invalid``, ``failed`` or ``not_tried``."""
    error: Code | None
    detail: str
    simulated_ms: int
    crl_number: int | None = None
    source: str = ""
    """How the bytes came when they came over LDAP (``retrieved over LDAP from
    DC01.contoso.local (127.0.0.1:port)``); empty otherwise."""
    origin: str = ""
    """Where the machine got it: ``memory`` or ``disk`` (its URL cache), ``network``; empty
    for a URL not tried. JSON ``revocation.urls[].source``."""
    crl: str = "base"
    """``base`` (a CDP URL of the certificate) or ``delta`` (a delta CRL URL named by the base
    CRL's Freshest CRL extension)."""
    http_status: int | None = None
    """The HTTP status the web server answered, when it answered with an error."""


@dataclass(frozen=True)
class ElementStatus:
    """The revocation status of one certificate of the chain."""

    subject: str
    issuer: str
    serial: int
    status: str
    """``good``, ``revoked``, ``offline`` or ``no_check``."""
    error: Code | None
    urls: tuple[UrlAttempt, ...]
    delta_urls: tuple[UrlAttempt, ...] = ()
    """Delta CRL URLs named by the good base CRL's Freshest CRL extension, as tried."""
    delta_missing: bool = False
    """Offline only because no good delta CRL was found (OpenSSL does not require deltas)."""


@dataclass(frozen=True)
class RevocationResult:
    checked: bool
    elements: tuple[ElementStatus, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    """Every CRL that was retrieved and parsed (good or stale), for the OpenSSL cross-check."""

    @property
    def status(self) -> str:
        """The worst element status: ``revoked`` > ``offline`` > ``no_check`` > ``good``."""
        order = ("revoked", "offline", "no_check")
        for s in order:
            if any(e.status == s for e in self.elements):
                return s
        return "good" if self.checked else "not_checked"

    @property
    def error(self) -> Code | None:
        for s in ("revoked", "offline", "no_check"):
            for e in self.elements:
                if e.status == s:
                    return e.error
        return None

    @property
    def simulated_ms(self) -> int:
        return sum(u.simulated_ms for u in self.urls)

    @property
    def urls(self) -> tuple[UrlAttempt, ...]:
        return tuple(u for e in self.elements for u in (*e.urls, *e.delta_urls))


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


# -- the chain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    error: Code
    flag: WinHttpFlag
    category: str
    """``trust``, ``date``, ``usage``, ``name``, ``revoked``, ``offline`` or ``signature``:
    the vocabulary the OpenSSL cross-check maps its verify codes to."""
    detail: str
    openssl_blind: bool = False
    """A problem OpenSSL does not look for (a missing delta CRL): its silence is no
    disagreement."""


@dataclass(frozen=True)
class ChainVerdict:
    chain: tuple[x509.Certificate, ...]
    """End entity first; ends at a trusted root when the chain is complete."""
    problems: tuple[ChainProblem, ...]
    revocation: RevocationResult = field(default_factory=lambda: RevocationResult(False))

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def flags(self) -> int:
        value = 0
        for p in self.problems:
            value |= p.flag
        return value

    @property
    def error(self) -> Code | None:
        """The error CryptoAPI's SSL policy reports first (chain, revocation, then name)."""
        order = ("trust", "signature", "revoked", "date", "usage", "offline", "name")
        for category in order:
            for p in self.problems:
                if p.category == category:
                    return p.error
        return None

    @property
    def categories(self) -> set[str]:
        return {p.category for p in self.problems}

    @property
    def openssl_visible(self) -> set[str]:
        """The categories OpenSSL would also report."""
        return {p.category for p in self.problems if not p.openssl_blind}


# -- one request -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSslJudgement:
    verify_code: int
    verify_message: str
    category: str
    agrees: bool
    """Whether OpenSSL's verdict matches the Windows-semantics engine's."""


@dataclass
class HttpOutcome:
    """Everything one request went through, for the step result and the logs."""

    method: str
    url: str
    host: str
    port: int
    secure: bool
    crl_check: bool
    connect_error: Code | None = None
    connect_detail: str = ""
    verdict: ChainVerdict | None = None
    openssl: OpenSslJudgement | None = None
    status: int | None = None
    reason: str | None = None
    body: bytes = b""
    simulated_ms: int = 0
    notes: list[str] = field(default_factory=list)
    present_cert: bool = True
    verified_at: dt.datetime | None = None
    """The client's own time (lab clock plus its ``clock_skew``) at which both judges, the
    Windows engine and OpenSSL, verified the server's certificate."""

    @property
    def winhttp_error(self) -> Code | None:
        if self.connect_error is not None:
            return self.connect_error
        if self.verdict is not None and not self.verdict.ok:
            return codes.ERROR_WINHTTP_SECURE_FAILURE
        return None

    @property
    def flags(self) -> int:
        return self.verdict.flags if self.verdict is not None else 0

    @property
    def ok(self) -> bool:
        return self.winhttp_error is None and self.status == 200


# -- one step --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MpChoice:
    host: str
    https: bool
    why: str


class FailureKind(enum.Enum):
    """Why a step failed, in one word: the judge explains each kind its own way."""

    TLS = "tls"
    """CryptoAPI (through WinHTTP) refused the MP's certificate."""
    HTTP = "http"
    """The MP answered, with a status other than 200 (or a reply that is not XML)."""
    CONNECT = "connect"
    """The MP's name did not resolve, nothing listened, or the connection failed."""
    INSTALL_FROM_INTERNET = "install_from_internet"
    """ccmsetup ran on the internet without a VPN or local media."""
    NO_INTERNET_MP = "no_internet_mp"
    """The client is on the internet and knows no internet-facing MP."""
    NO_MP = "no_mp"
    """The client knows no MP at all."""
    NO_PKI = "no_pki"
    """An HTTPS-only MP, and the client was installed without /UsePKICert."""
    NO_CLIENT_CERT = "no_client_cert"
    """Client certificate selection failed."""
    NOT_INSTALLED = "not_installed"
    """No earlier install step succeeded."""
    NOT_REGISTERED = "not_registered"
    """No earlier register step succeeded."""


@dataclass
class StepObservation:
    """What happened during one client step (the judge turns it into a result)."""

    action: Action
    location: Zone
    connection: str = ""
    """``intranet`` or ``internet``: the client's own view of where it is."""
    mp: MpChoice | None = None
    crl_check: bool | None = None
    crl_source: str = ""
    options: int | None = None
    outcome: str = "ok"
    failure: FailureKind | None = None
    error: Code | None = None
    detail: str = ""
    requests: list[HttpOutcome] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kept_notes: list[str] = field(default_factory=list)
    """Notes the step result keeps whatever the outcome (what happened to the URL cache)."""
    extra_identifiers: set[str] = field(default_factory=set)
    earlier_fix: str = ""
    """The fix of an earlier step this one failed because of (a registration that failed, for
    a policy or inventory step that finds the client unregistered); the judge repeats it."""

    @property
    def failed_request(self) -> HttpOutcome | None:
        return next((r for r in self.requests if not r.ok), None)

    @property
    def target(self) -> str | None:
        req = self.failed_request or (self.requests[-1] if self.requests else None)
        return req.url if req else None

    @property
    def simulated_ms(self) -> int:
        return sum(r.simulated_ms for r in self.requests)

    def fail(self, failure: FailureKind, error: Code | None, detail: str) -> None:
        self.outcome = "fail"
        self.failure = failure
        self.error = error
        self.detail = detail


__all__ = ["ChainProblem", "ChainVerdict", "ElementStatus", "FailureKind", "HttpOutcome",
           "MpChoice", "OpenSslJudgement", "RevocationResult", "StepObservation", "UrlAttempt",
           "crl_number"]
