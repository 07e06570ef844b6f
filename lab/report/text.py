"""The plain-text report of a run, and the demo's story telling."""

from __future__ import annotations

import textwrap

from lab.codes import flag_names
from lab.run import RunResult, ScenarioResult
from lab.verdict import StepResult

WIDTH = 100


def _wrap(label: str, text: str, indent: int = 8) -> list[str]:
    if not text:
        return []
    prefix = " " * indent + f"{label:<5}"
    return textwrap.wrap(text, WIDTH, initial_indent=prefix,
                         subsequent_indent=" " * (indent + 5), break_on_hyphens=False,
                         break_long_words=False)


def step_summary(step: StepResult) -> str:
    """``FAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013`` or ``ok``."""
    if step.outcome == "ok":
        return "ok"
    parts = ["FAIL"]
    if step.error is not None:
        parts.append(step.error.name)
        if step.error.numeric and step.error.name != step.error.hex:
            parts.append(step.error.hex)
    if step.http_status and step.http_status != "200":
        parts.append(f"HTTP {step.http_status}")
    return " ".join(parts)


def evidence_lines(step: StepResult, indent: int = 8) -> list[str]:
    """The per-URL retrieval trace and the client log lines of a failed step."""
    lines: list[str] = []
    pad = " " * indent
    if step.flags:
        lines.append(f"{pad}winhttp  ERROR_WINHTTP_SECURE_FAILURE (12175), flags "
                     f"{', '.join(flag_names(step.flags))} (0x{step.flags:x})")
    rev = step.revocation
    if rev is not None and rev.checked:
        for u in rev.urls:
            took = f" [{u.simulated_ms / 1000:g} s]" if u.simulated_ms else ""
            err = f" {u.error.hex} {u.error.name}" if u.error else ""
            lines.append(f"{pad}crl      {u.result:<13} {u.url}{took}{err}")
    if step.openssl is not None and step.outcome == "fail":
        agree = "agrees" if step.openssl.agrees else "DISAGREES"
        lines.append(f"{pad}openssl  verify code {step.openssl.verify_code} "
                     f"({step.openssl.verify_message}); {agree} with the Windows engine")
    for line in step.log:
        if line.severity >= 2:
            lines.append(f"{pad}log      {line.file}: {line.text}")
    return lines


def render_step(step: StepResult, verbose: bool) -> list[str]:
    mark = "PASS" if step.met else "MISS"
    expected = f"(expected {step.expected})" if step.expected else "(no expectation)"
    head = (f"    {mark}  {step.index + 1}. {step.action} @ {step.location:<9} "
            f"{step_summary(step)}  {expected}")
    lines = [head]
    if step.outcome == "fail" or not step.met or verbose:
        lines += _wrap("why", step.explanation)
        lines += _wrap("fix", step.fix)
        lines += evidence_lines(step)
        for ref in step.log_refs:
            lines.append(f"        open     {ref}")
        for note in step.notes:
            lines += _wrap("note", note)
    return lines


def render_scenario(result: ScenarioResult, verbose: bool = False) -> str:
    s = result.scenario
    verdict = "PASSED" if result.passed else "FAILED"
    source = f" [{s.info.source}]" if s.info.source else ""
    lines = [f"== {s.name}: {s.info.title}{source}  -> {verdict}"]
    if s.file:
        lines.append(f"   file: {s.file}")
    if result.pki.mp_refusal is not None:
        lines += _wrap("pki", result.pki.mp_refusal.message, indent=3)
    for client in result.clients:
        lines.append(f"  client {client.name}")
        for step in client.steps:
            lines += render_step(step, verbose)
    return "\n".join(lines)


def render_text(run: RunResult, verbose: bool = False) -> str:
    blocks = [render_scenario(r, verbose) for r in run.scenarios]
    steps = [st for r in run.scenarios for st in r.steps]
    met = sum(1 for st in steps if st.met)
    passed = sum(1 for r in run.scenarios if r.passed)
    summary = (f"{passed}/{len(run.scenarios)} scenarios passed, {met}/{len(steps)} "
               f"expectations met, in {run.wall_ms / 1000:.1f} s")
    disagreements = [st for st in steps if st.judges_agree is False]
    if disagreements:
        summary += f"; OpenSSL DISAGREED with the Windows engine on {len(disagreements)} steps"
    return "\n\n".join(blocks) + "\n\n" + summary + "\n"
