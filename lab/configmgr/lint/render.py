"""The linter's report as text (``ibcm-lab ccmsetup``) or JSON (``--format json``)."""

from __future__ import annotations

import json

from lab.configmgr.lint.report import LintReport
from lab.names import printable

__all__ = ["render_json", "render_text"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render_text(report: LintReport) -> str:
    lines = [f"ccmsetup line  {report.line}", f"site           {report.site.describe()}", ""]
    for f in report.findings:
        lines.append(f"{f.severity.upper():<8} {f.code}: {f.reason}")
        lines.append(f"    fix        {f.fix}")
        lines.append(f"    source     {f.source}")
        lines.append(f"    corrected  {f.corrected if f.corrected is not None else '(none)'}")
        lines.append("")
    counts = {s: sum(f.severity == s for f in report.findings)
              for s in ("error", "warning", "info")}
    if report.findings:
        lines.append(f"{_plural(counts['error'], 'error')}, "
                     f"{_plural(counts['warning'], 'warning')}, {counts['info']} info")
    else:
        lines.append("No findings: the line fits the site.")
    lines.append("Corrected:")
    lines.append(report.corrected if report.corrected is not None
                 else "(none: a syntax error could not be repaired automatically)")
    # one value (a ccmsetup line, a certificate field, a URL) never spans lines or reaches
    # the terminal with a control character in it
    return "\n".join(printable(line) for line in lines) + "\n"


def render_json(report: LintReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
