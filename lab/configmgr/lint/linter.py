"""The linter: a ccmsetup command line and the site in, a :class:`LintReport` out."""

from __future__ import annotations

from lab.configmgr.lint.fixes import applied
from lab.configmgr.lint.report import Finding, LintReport, SiteContext
from lab.configmgr.lint.rules import analyse
from lab.configmgr.lint.syntax import syntax_stage
from lab.configmgr.winargs import split_windows_command_line
from lab.errors import UsageError
from lab.names import is_ccm_host, is_site_code

__all__ = ["lint_ccmsetup"]


def _semantic_stage(line: str, site: SiteContext) -> list[Finding]:
    args, pending = analyse(line, site)
    return [
        Finding(p.severity, p.code, p.reason, p.fix, p.source,
                applied(args, [p.apply]) if p.apply is not None else None)
        for p in pending
    ]


def _fully_corrected(line: str, site: SiteContext) -> str:
    """Apply every fix (fixes find their argument by name, so they compose), re-lint, repeat
    until nothing fixable is left."""
    seen = {line}
    for _ in range(8):
        args, pending = analyse(line, site)
        fixes = [p.apply for p in pending if p.apply is not None]
        new = applied(args, fixes) if fixes else None
        if new is None or new in seen:
            break
        seen.add(new)
        line = new
    return line


def _site_context(site_code: str | None, intranet_fqdn: str | None, internet_fqdn: str | None,
                  https_only: bool) -> SiteContext:
    if site_code is not None and not is_site_code(site_code):
        raise UsageError(f"--site-code expects a 3-character site code (letters and digits), "
                         f"got {site_code!r}")
    for flag, value in (("--intranet-fqdn", intranet_fqdn), ("--internet-fqdn", internet_fqdn)):
        if value is not None and not is_ccm_host(value):
            hint = " (without https:// or a path)" if "/" in value or ":" in value else ""
            raise UsageError(f"{flag} expects a host name{hint}, got {value!r}")
    return SiteContext(site_code, intranet_fqdn, internet_fqdn, https_only)


def lint_ccmsetup(line: str, *, site_code: str | None = None,
                  intranet_fqdn: str | None = None, internet_fqdn: str | None = None,
                  https_only: bool = True) -> LintReport:
    """Lint ``line`` against the site; see :mod:`lab.configmgr.lint`.

    Raises :class:`~lab.errors.UsageError` only when the line cannot be used at all (empty,
    or nothing in it is a ccmsetup argument) or a site option is malformed.
    """
    site = _site_context(site_code, intranet_fqdn, internet_fqdn, https_only)
    if not line.strip():
        raise UsageError("the ccmsetup command line is empty: pass the whole line in quotes, "
                         "for example 'ccmsetup.exe /UsePKICert SMSSITECODE=P01'")
    base, repairs = syntax_stage(line, site)
    if base is not None and not split_windows_command_line(base):
        raise UsageError(f"{line!r} is not a ccmsetup command line: none of its arguments is "
                         "a ccmsetup parameter or a client.msi property")
    findings = [Finding("error", r.code, r.reason, r.fix, r.source, base) for r in repairs]
    if base is None:
        return LintReport(line, site, tuple(findings), None)
    findings.extend(_semantic_stage(base, site))
    corrected = _fully_corrected(base, site) if findings else line
    return LintReport(line, site, tuple(findings), corrected)
