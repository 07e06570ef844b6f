"""What the linter returns: the site it checked against, its findings, the corrected line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Finding", "LintReport", "Severity", "SiteContext"]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class SiteContext:
    """What the linter knows about the site the line is for."""

    site_code: str | None = None
    """The site code (``SMSSITECODE`` should name it)."""
    intranet_fqdn: str | None = None
    """The MP's intranet FQDN (``SMSMP`` should name it)."""
    internet_fqdn: str | None = None
    """The internet-facing MP's FQDN (``CCMHOSTNAME`` should name it)."""
    https_only: bool = True
    """The site's MPs accept HTTPS only (``SMSMP`` needs ``https://``)."""

    def describe(self) -> str:
        parts = [
            f"site code {self.site_code or '(not given)'}",
            f"intranet MP {self.intranet_fqdn or '(not given)'}",
            f"internet MP {self.internet_fqdn or '(not given)'}",
            "HTTPS only" if self.https_only else "HTTPS or HTTP",
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class Finding:
    """One problem of the line, with its fix."""

    severity: Severity
    """``error`` (the client will fail or the line is malformed), ``warning`` (works, but
    against the documentation or the site), ``info`` (advice)."""
    code: str
    """Stable identifier (``missing-usepkicert``)."""
    reason: str
    """One line: what is wrong and the rule it breaks."""
    fix: str
    """What to change."""
    source: str
    """Where the rule comes from (seed section, reference section)."""
    corrected: str | None
    """The command line with this fix applied (and, for a syntax finding, every syntax
    repair), or ``None`` when the fix needs a value the linter was not given."""

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "reason": self.reason,
            "fix": self.fix,
            "source": self.source,
            "corrected": self.corrected,
        }


@dataclass(frozen=True)
class LintReport:
    """The findings for one command line."""

    line: str
    """The command line as given."""
    site: SiteContext
    findings: tuple[Finding, ...]
    corrected: str | None
    """The line with every fix applied, or ``None`` when a syntax error could not be
    repaired."""

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 without error findings, 1 with at least one."""
        return 1 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "site": {
                "site_code": self.site.site_code,
                "intranet_fqdn": self.site.intranet_fqdn,
                "internet_fqdn": self.site.internet_fqdn,
                "https_only": self.site.https_only,
            },
            "findings": [f.to_json() for f in self.findings],
            "corrected": self.corrected,
        }
