"""The text report of a run: plain text for files, pipes and CI, rich on a terminal.

:func:`render_text` returns the plain report (the format tests and scripts parse).
:func:`print_text` prints the same report, styled with ``rich`` (coloured PASS/MISS, ok/FAIL,
a rule per scenario, the why/fix/evidence under labels in a column) when standard output is a
terminal, and the plain report otherwise: when it is redirected or piped, when ``NO_COLOR``
is set (to anything but the empty string) or when ``TERM`` is ``dumb``. ``FORCE_COLOR`` is
not honoured: a report redirected to a file is always plain.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from contextlib import AbstractContextManager, nullcontext
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from lab.codes import flag_names
from lab.names import printable
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult, format_offset

WIDTH = 100
EVIDENCE_LABEL = 9
"""Width of an evidence label column (``crl      ``, ``log      ``) in the plain report."""


def _wrap(label: str, text: str, indent: int = 8) -> list[str]:
    if not text:
        return []
    prefix = " " * indent + f"{label:<5}"
    return textwrap.wrap(text, WIDTH, initial_indent=prefix,
                         subsequent_indent=" " * (indent + 5), break_on_hyphens=False,
                         break_long_words=False)


def step_time(step: StepResult) -> str:
    """``  [+8d 00:00:01]``: when the step started, after the scenario's start (lab time)."""
    if step.since_start is None:
        return ""
    return f"  [{format_offset(step.since_start)}]"


def cache_summary(step: StepResult) -> str:
    """``[CRL from the memory cache]`` when CryptoAPI served the step's CRLs from its URL
    cache (``UrlAttempt.origin``), empty otherwise."""
    rev = step.revocation
    tiers = [] if rev is None else sorted({u.origin for u in rev.urls
                                           if u.origin in ("memory", "disk")
                                           and u.result != "failed"})
    return f"[CRL from the {' and '.join(tiers)} cache]" if tiers else ""


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


ORIGIN_WORDS = {"memory": "from the memory cache", "disk": "from the disk cache"}
"""How the text report says a URL's object came from the machine's URL cache
(``UrlAttempt.origin``); a line without it came over the network."""


def evidence_items(step: StepResult) -> list[tuple[str, str, str]]:
    """The evidence of a step as ``(label, text, rich style)``: the WinHTTP error and flags,
    the per-URL CRL retrievals, OpenSSL's verdict and the client's warning and error log
    lines (the CCMHTTP lines among them)."""
    items: list[tuple[str, str, str]] = []
    if step.flags:
        items.append(("winhttp", f"ERROR_WINHTTP_SECURE_FAILURE (12175), flags "
                                 f"{', '.join(flag_names(step.flags))} (0x{step.flags:x})",
                      "red"))
    rev = step.revocation
    if rev is not None and rev.checked:
        for u in rev.urls:
            took = f" [{u.simulated_ms / 1000:g} s]" if u.simulated_ms else ""
            err = f" {u.error.hex} {u.error.name}" if u.error else ""
            style = {"verified": "green", "not_tried": "dim"}.get(u.result, "red")
            came = f" ({ORIGIN_WORDS[u.origin]})" if u.origin in ORIGIN_WORDS else ""
            items.append((u.crl if u.crl == "delta" else "crl",
                          f"{u.result:<13} {u.url}{took}{err}{came}", style))
    if step.openssl is not None and (step.outcome == "fail" or not step.openssl.agrees):
        agree = "agrees" if step.openssl.agrees else "DISAGREES"
        items.append(("openssl", f"verify code {step.openssl.verify_code} "
                                 f"({step.openssl.verify_message}); {agree} with the Windows "
                                 "engine", "" if step.openssl.agrees else "bold red"))
    for line in step.log:
        if line.severity >= 2:
            items.append(("log", f"{line.file}: {line.text}",
                          "red" if line.severity >= 3 else "yellow"))
    return items


def evidence_lines(step: StepResult, indent: int = 8) -> list[str]:
    """The per-URL retrieval trace and the client log lines of a failed step."""
    pad = " " * indent
    return [f"{pad}{label:<{EVIDENCE_LABEL}}{text}" for label, text, _ in evidence_items(step)]


def _expected(step: StepResult) -> str:
    if step.automatic:
        return "(no expectation: not a step of the scenario)"
    return f"(expected {printable(step.expected)})" if step.expected else "(no expectation)"


def render_step(step: StepResult, verbose: bool) -> list[str]:
    """A step's head line (``PASS``/``MISS``; ``auto`` for ccmexec's automatic work after an
    install, numbered ``1a``, ``1b``), and its why, fix and evidence when it failed."""
    mark = "auto" if step.automatic else "PASS" if step.met else "MISS"
    cached = cache_summary(step)
    head = (f"    {mark}  {step.number}. {step.title} @ {step.location:<9} "
            f"{step_summary(step)}  {_expected(step)}" + (f"  {cached}" if cached else "")
            + step_time(step))
    lines = [head]
    if not (step.outcome == "fail" or not step.met or step.judges_agree is False or verbose):
        for note in step.notes:  # an ok step keeps only notes worth seeing (the URL cache)
            lines += _wrap("note", note)
    if step.outcome == "fail" or not step.met or step.judges_agree is False or verbose:
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
    if result.faults:
        lines.append(f"   faults: {', '.join(result.faults)}")
    for client in result.clients:
        lines.append(f"  client {client.name}")
        for step in client.steps:
            lines += render_step(step, verbose)
    # values from the scenario file (title, file name, expect, URLs, log lines) never carry a
    # control character to the terminal and never start a line of their own
    return "\n".join(printable(line) for line in lines)


def _summary(run: RunResult) -> tuple[str, bool]:
    """The last line of the report, and whether it is good news."""
    steps = [st for r in run.scenarios for st in r.steps if not st.automatic]
    met = sum(1 for st in steps if st.met)
    passed = sum(1 for r in run.scenarios if r.passed)
    summary = (f"{passed}/{len(run.scenarios)} scenarios passed, {met}/{len(steps)} "
               f"expectations met, in {run.wall_ms / 1000:.1f} s")
    disagreements = [st for r in run.scenarios for st in r.steps if st.judges_agree is False]
    if disagreements:
        summary += f"; OpenSSL DISAGREED with the Windows engine on {len(disagreements)} steps"
    return summary, run.passed and not disagreements


def render_text(run: RunResult, verbose: bool = False) -> str:
    """The plain report: no colour, no escape codes (what scripts and CI parse)."""
    blocks = [render_scenario(r, verbose) for r in run.scenarios]
    return "\n\n".join(blocks) + "\n\n" + _summary(run)[0] + "\n"


# -- the terminal ----------------------------------------------------------------------------


def isatty(stream: object) -> bool:
    """``stream.isatty()``, False for a stream without one or a closed one."""
    check = getattr(stream, "isatty", None)
    try:
        return bool(check()) if callable(check) else False
    except (ValueError, OSError):
        return False


def terminal_console(file: IO[str] | None = None) -> Console:
    """A console on ``file`` (standard output, looked up at each write, by default) that is a
    terminal only when the stream really is one (``FORCE_COLOR`` is ignored)."""
    stream = file if file is not None else sys.stdout
    return Console(file=file, force_terminal=isatty(stream), highlight=False)


def styled(console: Console) -> bool:
    """Whether ``console`` gets rich output: a terminal, not dumb, and no ``NO_COLOR``."""
    if os.environ.get("NO_COLOR", "") != "" or console.no_color:
        return False
    return console.is_terminal and not console.is_dumb_terminal


def write_plain(console: Console, text: str) -> None:
    """Write ``text`` as it is to the console's stream (no markup, wrapping or styling)."""
    console.file.write(text)
    console.file.flush()


def status(message: str, console: Console | None = None) -> AbstractContextManager[object]:
    """A spinner with ``message`` while something runs, on a styled terminal only (it
    disappears when done); elsewhere it does nothing."""
    console = console if console is not None else terminal_console()
    if not styled(console):
        return nullcontext()
    return console.status(message, spinner="dots")


LABEL_STYLES = {"why": "bold cyan", "fix": "bold green", "note": "bold", "pki": "bold red",
                "open": "bold"}
UNWRAPPED = frozenset({"log", "crl", "open"})
"""Rows kept on one line (the terminal folds them): log lines and URLs people copy."""


def detail_text(rows: list[tuple[str, str, str]], indent: int, width: int,
                label_width: int = EVIDENCE_LABEL, label_style: str | None = None) -> Text:
    """``(label, text, style)`` rows, the label in a column and the text wrapped at ``width``
    with a hanging indent. Words longer than a line (URLs) are not cut: the terminal wraps
    them, so a copied URL stays whole, and :data:`UNWRAPPED` rows (log lines) are not
    wrapped at all. No trailing spaces."""
    out = Text()
    room = max(20, width - indent - label_width)
    for label, raw, style in rows:
        text = printable(raw)
        lines = ([text] if label in UNWRAPPED else
                 textwrap.wrap(text, room, break_on_hyphens=False, break_long_words=False)
                 ) or [""]
        out.append(" " * indent)
        out.append(f"{label:<{label_width}}",
                   style=label_style or LABEL_STYLES.get(label, "bold dim"))
        out.append(lines[0], style=style)
        for more in lines[1:]:
            out.append("\n" + " " * (indent + label_width))
            out.append(more, style=style)
        out.append("\n")
    out.rstrip()
    return out


def summary_text(step: StepResult) -> Text:
    """:func:`step_summary`, green for ok and red for a failure."""
    return Text(step_summary(step), style="green" if step.outcome == "ok" else "bold red")


def _rich_step(step: StepResult, verbose: bool, width: int) -> list[RenderableType]:
    mark = (Text(" auto ", style="bold") if step.automatic
            else Text(" PASS ", style="bold green") if step.met
            else Text(" MISS ", style="bold white on red"))
    cached = cache_summary(step)
    head = Text.assemble("  ", mark, f" {step.number}. ", (step.title, "bold"),
                         f" @ {step.location:<9} ", summary_text(step), "  ",
                         (_expected(step), "dim"), (f"  {cached}" if cached else "", "cyan"),
                         (step_time(step), "cyan"))
    parts: list[RenderableType] = [head]
    if not (step.outcome == "fail" or not step.met or step.judges_agree is False or verbose) \
            and step.notes:
        parts.append(detail_text([("note", note, "dim") for note in step.notes], 8, width))
    if step.outcome == "fail" or not step.met or step.judges_agree is False or verbose:
        rows = [(label, text, "") for label, text in (("why", step.explanation),
                                                      ("fix", step.fix)) if text]
        rows += evidence_items(step)
        rows += [("open", ref, "") for ref in step.log_refs]
        rows += [("note", note, "dim") for note in step.notes]
        parts.append(detail_text(rows, 8, width))
    return parts


def render_scenario_rich(result: ScenarioResult, verbose: bool = False,
                         width: int = WIDTH) -> Group:
    """One scenario for a terminal ``width`` columns wide: a rule with the verdict and the
    name, the title, then the steps (print it with ``soft_wrap=True``)."""
    s = result.scenario
    verdict = (Text(" PASSED ", style="bold white on green") if result.passed
               else Text(" FAILED ", style="bold white on red"))
    parts: list[RenderableType] = [
        Rule(Text.assemble(verdict, " ", (printable(s.name), "bold")), align="left",
             style="green" if result.passed else "red")]
    source = f" [{s.info.source}]" if s.info.source else ""
    title = "\n".join(textwrap.wrap(printable(s.info.title + source), width, initial_indent="   ",
                                    subsequent_indent="   ", break_on_hyphens=False))
    parts.append(Text(title))
    if s.file:
        parts.append(Text(f"   file: {printable(s.file)}", style="dim"))
    if result.pki.mp_refusal is not None:
        parts.append(detail_text([("pki", result.pki.mp_refusal.message, "")], 3, width,
                                 label_width=5))
    if result.faults:
        parts.append(Text(printable(f"   faults: {', '.join(result.faults)}"), style="yellow"))
    for client in result.clients:
        parts.append(Text.assemble("  client ", (printable(client.name), "bold")))
        for step in client.steps:
            parts += _rich_step(step, verbose, width)
    return Group(*parts)


_TRACE_STYLES = ((re.compile(r"^\s*(Failed|Expired|ERROR:|CertUtil:)"), "red"),
                 (re.compile(r"^\s*(Verified|OK) "), "green"),
                 (re.compile(r"^\s*Lab:"), "dim"),
                 (re.compile(r"^(==|CertContext)"), "bold"))


def trace_text(trace: str) -> Text:
    """A certutil-shaped trace for a terminal: its lines as they are, status lines coloured."""
    text = Text()
    for raw in trace.splitlines(keepends=True):
        line = printable(raw, keep="\n")
        style = next((st for rx, st in _TRACE_STYLES if rx.match(line)), "")
        text.append(line, style=style)
    return text


def print_text(run: RunResult, verbose: bool = False, *, trace: bool = False,
               console: Console | None = None) -> None:
    """Print the report of ``run`` (and, with ``trace``, every revocation check the way
    ``certutil -verify -urlfetch`` shows it): rich on a terminal, otherwise exactly
    ``render_text(run, verbose)`` (+ ``"\\n" + render_trace(run)``)."""
    from lab.report.certutil import render_trace

    console = console if console is not None else terminal_console()
    if not styled(console):
        out = render_text(run, verbose)
        if trace:
            out += "\n" + render_trace(run)
        write_plain(console, out)
        return
    for result in run.scenarios:
        console.print(render_scenario_rich(result, verbose, console.width), soft_wrap=True)
        console.print()
    summary, good = _summary(run)
    console.print(Text(summary, style="bold green" if good else "bold red"))
    if trace:
        console.print()
        console.print(trace_text(render_trace(run)), soft_wrap=True)
