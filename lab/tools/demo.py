"""``ibcm-lab demo``: the seed document, scene by scene, with the lab as the witness.

Each scene sets up a failing configuration, shows what the client did and the evidence
(the error, the per-URL CRL trace, the CCMHTTP log lines and, where the failing step checked
revocation, the certutil-style trace), says why, gives the fix, and runs the passing twin to
prove the fix.

:func:`render_demo` returns the plain text (what a file, a pipe or CI gets).
:func:`present` prints the scenes one by one: styled with ``rich`` on a terminal, the plain
text otherwise (standard output redirected, ``NO_COLOR`` set, ``TERM=dumb``). With
``pause=True`` it waits for Enter between scenes, reading standard input, but only when both
standard input and standard output are terminals; otherwise ``pause`` is ignored and the
output is exactly :func:`render_demo`'s, so a script, a CI job or ``< /dev/null`` never
waits. At a pause, ``q`` (then Enter), Ctrl-C or Ctrl-D ends the demo cleanly after the
scene on screen.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Protocol

from rich import box
from rich.console import Console
from rich.control import Control
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.segment import ControlType
from rich.table import Table
from rich.text import Text

from lab.errors import UsageError
from lab.names import printable
from lab.report.certutil import render_step_trace
from lab.report.text import (
    EVIDENCE_LABEL,
    WIDTH,
    detail_text,
    evidence_items,
    isatty,
    step_summary,
    styled,
    summary_text,
    terminal_console,
    trace_text,
    write_plain,
)
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.scenario.model import Scenario

HEADER = "ibcm-lab demo: the seed document, reproduced on loopback"
TRACE_HEADING = "certutil-style trace of the failing step's revocation check:"


@dataclass(frozen=True)
class Scene:
    section: str
    title: str
    failing: str
    passing: str
    change: str
    """What the passing twin changes, in one sentence."""


SCENES: tuple[Scene, ...] = (
    Scene("seed §2", "The MP's certificate needs two names",
          "seed2-mp-cert-intranet-name-only", "seed2-mp-cert-both-names",
          "The MP certificate's SAN lists both FQDNs."),
    Scene("seed §2", "A public CA plan that allows one name",
          "seed2-public-ca-single-name-plan", "seed2-public-ca-multi-name-plan",
          "The certificate is ordered on a plan that allows two names."),
    Scene("seed §3", "SMSMP needs https:// for an HTTPS-only MP",
          "seed3-smsmp-without-https", "seed3-smsmp-with-https",
          "SMSMP=https://IBCM-Intra.contoso.local."),
    Scene("seed §3", "/UsePKICert is not optional",
          "seed3-without-usepkicert", "seed3-smsmp-with-https",
          "ccmsetup is run with /UsePKICert."),
    Scene("seed §3, supplement 1", "Install from the intranet or through a VPN",
          "seed3-install-from-internet-or-vpn", "seed3-install-from-internet-or-vpn",
          "The second machine connects through the VPN before running ccmsetup."),
    Scene("seed §3, supplement 2", "CCMHOSTNAME is learned from the site",
          "seed3-ccmhostname-omitted-never-refreshed", "seed3-ccmhostname-learned-from-site",
          "The client does a site refresh on the intranet before it roams."),
    Scene("seed §4", "The CRL box and an internet client",
          "seed4-internet-client-ldap-cdp-crl-on", "seed4-internet-client-crl-check-off",
          "The site's \"Clients check the CRL for site systems\" box is cleared."),
    Scene("seed §4", "...or keep the box and publish the CRL over HTTP",
          "seed4-internet-client-ldap-cdp-crl-on", "seed4-internet-client-http-cdp-published",
          "The CA writes an internet-reachable HTTP CDP into the MP certificate."),
    Scene("seed §4", "A workgroup client on the intranet",
          "seed4-workgroup-intranet-ldap-cdp", "seed4-workgroup-crl-check-off",
          "/NoCRLCheck for the bootstrap and the site's CRL box cleared."),
)


def bundled_dir() -> Path:
    """The folder of bundled scenarios (``scenarios/`` in the source tree)."""
    return Path(str(files("lab.bundled")))


def demo_paths(scene: int | None = None) -> list[Path]:
    folder = bundled_dir()
    chosen = SCENES if scene is None else (scene_by_number(scene),)
    names = dict.fromkeys(n for s in chosen for n in (s.failing, s.passing))
    return [folder / f"{name}.toml" for name in names]


def scene_by_number(number: int) -> Scene:
    """Scene ``number`` (1-based), or a :class:`UsageError` naming the valid range."""
    if not 1 <= number <= len(SCENES):
        raise UsageError(f"--scene expects a number from 1 to {len(SCENES)}, got {number}")
    return SCENES[number - 1]


def _numbered(scene: int | None) -> list[tuple[int, Scene]]:
    if scene is not None:
        return [(scene, scene_by_number(scene))]
    return list(enumerate(SCENES, start=1))


def _wrap(text: str, indent: int, width: int = WIDTH) -> list[str]:
    return textwrap.wrap(printable(" ".join(text.split())), width, initial_indent=" " * indent,
                         subsequent_indent=" " * indent, break_on_hyphens=False,
                         break_long_words=False)


def _para(text: str, indent: int = 4) -> list[str]:
    return _wrap(text, indent)


# -- what a scene shows (shared by the plain and the terminal rendering) ----------------------


@dataclass(frozen=True)
class _View:
    number: int
    scene: Scene
    failing: ScenarioResult
    passing: ScenarioResult

    @property
    def title(self) -> str:
        return f"Scene {self.number} of {len(SCENES)} - {self.scene.section}: {self.scene.title}"

    @property
    def failed(self) -> StepResult | None:
        return next((st for st in self.failing.steps if st.outcome == "fail"), None)

    @property
    def twin_steps(self) -> list[StepResult]:
        """The passing twin's steps, when the twin is another scenario."""
        return [] if self.scene.passing == self.scene.failing else self.passing.steps

    @property
    def met(self) -> bool:
        return self.failing.passed and self.passing.passed


def _views(run: RunResult, scene: int | None) -> list[_View]:
    by_name = {r.scenario.name: r for r in run.scenarios}
    return [_View(n, sc, by_name[sc.failing], by_name[sc.passing]) for n, sc in _numbered(scene)]


def _setup_rows(s: Scenario) -> list[tuple[str, str]]:
    rows = [("CA", f"{ca.name} ({ca.kind.value}, {ca.host})") for ca in s.cas]
    mp = s.mp
    rows.append(("MP", f"{mp.intranet_fqdn} / {mp.internet_fqdn or '(no internet FQDN)'}; "
                       f"certificate from {mp.cert.issuer} naming {', '.join(mp.cert.san)}"))
    rows.append(("Site", f"{s.site.code}: {'HTTPS only' if s.site.https_only else 'HTTPS or HTTP'}"
                         f", clients check the CRL for site systems: "
                         f"{'yes' if s.site.check_crl else 'no'}"))
    for c in s.clients:
        kind = "domain-joined" if c.domain_joined else "workgroup"
        rows.append(("Client", f"{c.name} ({kind}): {c.ccmsetup.raw}"))
    return rows


def _did(step: StepResult) -> str:
    return f"{step.client} {step.number}. {step.title} from the {step.location}"


def demo_evidence(step: StepResult) -> list[tuple[str, str, str]]:
    """The evidence of a scene's failing step as ``(label, text, style)``: the error, then
    the run report's evidence (WinHTTP flags, CRL URLs, OpenSSL, the CCMHTTP log lines), and
    a line saying so when the client wrote no CCMHTTP line."""
    items: list[tuple[str, str, str]] = []
    if step.error is not None:
        name = step.error.name
        if step.error.numeric and name != step.error.hex:
            name += f" {step.error.hex}"
        elif name == step.error.hex:  # no verified symbol: say what the code means
            name += f" ({step.error.message.rstrip('.')})"
        items.append(("error", f"{name}: {step.error_message}" if step.error_message else name,
                      "bold red"))
    items += evidence_items(step)
    if not any(label == "log" and "[CCMHTTP]" in text for label, text, _ in items):
        why = ("the client sent no HTTP request in this step" if step.target is None
               else "none written for this step")
        items.append(("log", f"(no CCMHTTP line: {why})", "dim"))
    return items


def demo_trace(view: _View) -> str | None:
    """The certutil-style trace of the failing step, when it checked revocation."""
    step = view.failed
    if step is None or step.revocation is None or not step.revocation.checked:
        return None
    return render_step_trace(step, timezone=view.failing.scenario.info.timezone)


# -- plain text --------------------------------------------------------------------------------


def _plain_rows(rows: list[tuple[str, str, str]], indent: int) -> list[str]:
    return [f"{' ' * indent}{label:<{EVIDENCE_LABEL}}{text}" for label, text, _ in rows]


def _plain_scene(view: _View) -> list[str]:
    failing = view.failing
    out = [view.title, "-" * min(WIDTH, len(view.title))]
    out += _wrap(failing.scenario.info.description, 2)
    out.append("  What was set up:")
    out += [f"    {label} {text}" for label, text in _setup_rows(failing.scenario)]
    out.append("  What the clients did:")
    out += [f"    {_did(st)}: {step_summary(st)}" for st in failing.steps]
    failed = view.failed
    if failed is not None:
        out.append("  Evidence:")
        out += _plain_rows(demo_evidence(failed), 4)
        trace = demo_trace(view)
        if trace is not None:
            out.append(f"    {TRACE_HEADING}")
            out += [f"      {line}" if line else "" for line in trace.splitlines()]
        out.append("  Why:")
        out += _para(failed.explanation)
        out.append("  The fix:")
        out += _para(failed.fix)
    out.append(f"  Passing twin ({view.passing.scenario.name}): {view.scene.change}")
    out += [f"    {_did(st)}: {step_summary(st)}" for st in view.twin_steps]
    out.append(f"  Verdict: every expectation {'met' if view.met else 'NOT met'} "
               "in both scenarios.")
    return out


def _footer(run: RunResult) -> str:
    met = sum(1 for r in run.scenarios if r.passed)
    return (f"{met}/{len(run.scenarios)} scenarios behaved as the seed says "
            f"({run.wall_ms / 1000:.1f} s).")


def render_demo(run: RunResult, scene: int | None = None) -> str:
    """The whole demo (or scene ``scene``) as plain text, no escape codes."""
    out: list[str] = [HEADER, ""]
    for view in _views(run, scene):
        out += [printable(line) for line in _plain_scene(view)]
        out.append("")
    out.append(_footer(run))
    return "\n".join(out) + "\n"


# -- a terminal ---------------------------------------------------------------------------------


def _steps_table(steps: list[StepResult]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("client", "step", "from the", "what the client got"):
        table.add_column(column)
    for st in steps:
        table.add_row(printable(st.client), f"{st.number}. {st.title}", st.location,
                      summary_text(st))
    return table


def _heading(text: str, style: str = "bold") -> Text:
    return Text(f"  {text}", style=style)


def print_scene(console: Console, view: _View) -> None:
    """One scene, styled for a terminal."""
    width = console.width
    failing = view.failing
    console.print(Rule(Text(printable(view.title), style="bold"), align="left", style="cyan"))
    console.print(Text("\n".join(_wrap(failing.scenario.info.description, 2, width)),
                       style="italic"), soft_wrap=True)
    console.print(_heading("What was set up"))
    rows = [(label, text, "") for label, text in _setup_rows(failing.scenario)]
    console.print(detail_text(rows, 4, width, label_width=8, label_style="bold"),
                  soft_wrap=True)
    console.print(_heading("What the clients did"))
    console.print(_indented_table(_steps_table(failing.steps)))
    failed = view.failed
    if failed is not None:
        console.print(_heading("Evidence"))
        console.print(detail_text(demo_evidence(failed), 4, width), soft_wrap=True)
        trace = demo_trace(view)
        if trace is not None:
            console.print(_heading(f"  {TRACE_HEADING}", "bold dim"))
            console.print(trace_text(textwrap.indent(trace, "      ")), soft_wrap=True)
        console.print(Panel(Text(printable(" ".join(failed.explanation.split()))), title="Why",
                            title_align="left", border_style="cyan"))
        console.print(Panel(Text(printable(" ".join(failed.fix.split())), style="green"),
                            title="The fix", title_align="left", border_style="green"))
    console.print(Text.assemble(("  Passing twin ", "bold green"),
                                (f"({printable(view.passing.scenario.name)})", "dim"), ": ",
                                printable(view.scene.change)), soft_wrap=True)
    if view.twin_steps:
        console.print(_indented_table(_steps_table(view.twin_steps)))
    console.print(Text.assemble(
        "  Verdict: ", ("every expectation met", "bold green") if view.met
        else ("every expectation NOT met", "bold white on red"), " in both scenarios."))


def _indented_table(table: Table) -> Padding:
    return Padding(table, (0, 0, 0, 4), expand=False)


# -- present: scene by scene, with pauses -----------------------------------------------------


class LineInput(Protocol):
    """What :func:`present` reads a trainer's keys from (standard input)."""

    def isatty(self) -> bool: ...

    def readline(self) -> str: ...


def _wait(console: Console, stdin: LineInput, prompt: str, rich: bool) -> bool:
    """Show ``prompt`` and wait for a line: True to go on, False on q, Ctrl-C or Ctrl-D."""
    answer: str | None
    try:  # Ctrl-C from the moment the prompt shows, not only once the read has begun
        if rich:
            console.print(Text(f" {prompt} ", style="reverse"), end=" ")
        else:
            write_plain(console, f"{prompt} ")
        answer = stdin.readline()
    except KeyboardInterrupt:
        answer = None
    if not answer:  # Ctrl-C, or end of input (Ctrl-D)
        write_plain(console, "\n")
        return False
    if answer.strip().lower() in ("q", "quit", "exit"):
        return False
    if rich:  # the prompt line (and the Enter echoed after it) gives way to the next scene
        console.control(Control((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)))
    return True


def present(run: RunResult, scene: int | None = None, pause: bool = False, *,
            console: Console | None = None, stdin: LineInput | None = None) -> bool:
    """Print the demo scene by scene (see the module's docstring); returns False when the
    trainer quit at a pause, True otherwise. ``console`` and ``stdin`` default to standard
    output and standard input."""
    console = console if console is not None else terminal_console()
    stdin = stdin if stdin is not None else sys.stdin
    rich = styled(console)
    waiting = pause and console.is_terminal and isatty(stdin)
    views = _views(run, scene)
    if rich:
        console.print(Panel(Text(HEADER, style="bold"), expand=False, border_style="cyan"))
    else:
        write_plain(console, HEADER + "\n\n")
    finished = True
    for i, view in enumerate(views):
        if rich:
            print_scene(console, view)
            console.print()
        else:
            plain = [printable(line) for line in _plain_scene(view)]
            write_plain(console, "\n".join(plain) + "\n\n")
        if waiting and i + 1 < len(views):
            nxt = views[i + 1].number
            if not _wait(console, stdin, f"Press Enter for scene {nxt} of {len(SCENES)}, "
                                         "q to quit", rich):
                finished = False
                stopped = f"Stopped after scene {view.number} of {len(SCENES)}."
                if rich:
                    console.print(Text(stopped, style="bold"))
                else:
                    write_plain(console, stopped + "\n")
                break
    if rich:
        console.print(Text(_footer(run), style="bold green" if run.passed else "bold red"))
    else:
        write_plain(console, _footer(run) + "\n")
    return finished
