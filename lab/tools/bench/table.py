"""The bench's report: the table (plain, or rich on a terminal), the summary lines under it,
and the JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lab.errors import UsageError
from lab.tools.bench.figures import BenchReport, Figure


def _format(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit in ("s", "ms"):
        text = f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
        return f"{text} {unit}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit in ("/s", "cells/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{value:,.0f}" if value == int(value) else f"{value:.2f}"


def _status(res: BenchReport, fig: Figure) -> str:
    met = res.met(fig)
    if met is None:
        return "" if fig.goal is None or not res.quick else "(quick)"
    return "met" if met else "MISSED"


def rows(res: BenchReport) -> list[tuple[str, str, str, str, str, str, str]]:
    out = []
    for fig in res.figures:
        out.append((fig.group, fig.label, _format(fig.median, fig.unit),
                    _format(fig.min, fig.unit), _format(fig.max, fig.unit),
                    fig.goal.text if fig.goal else "", _status(res, fig)))
    return out


def _speedups(res: BenchReport) -> str:
    return " then ".join(f"{v:.2f}x" for v in res.speedup) or "not measured"


def summary_lines(res: BenchReport) -> list[str]:
    """The lines under the table: the machine, goals missed, skipped and failed
    measurements, each figure's note, then the run's notes."""
    machine = res.machine
    lines = [f"measured {res.started:%Y-%m-%d} on {machine['cpus']} cores ({machine['cpu_model']}"
             f", parallel speedup {_speedups(res)} of 2), Python "
             f"{machine['python']}, {machine['openssl']}, "
             f"{machine.get('event_loop', 'asyncio')} for the MP process and the load "
             f"generator; median of {res.repeat} "
             f"run{'s' if res.repeat != 1 else ''} (min, max)"]
    if res.quick:
        lines.append("--quick: tiny sizes that prove every measurement works; goals are judged "
                     "at full sizes only")
    judged = [f for f in res.figures if res.met(f) is not None]
    missed = [f for f in judged if not res.met(f)]
    if judged:
        lines.append(f"goals: {len(judged) - len(missed)} of {len(judged)} met")
    for fig in missed:
        assert fig.goal is not None
        lines.append(f"  missed: {fig.label}: {_format(fig.median, fig.unit)} "
                     f"(goal {fig.goal.text}; {fig.goal.miss(fig.median)})")
    for group, why in res.skipped:
        lines.append(f"{group}: {why}")
    for group, why in res.errors:
        lines.append(f"{group}: FAILED: {why}")
    for fig in res.figures:
        if fig.note:
            lines.append(f"  {fig.label}: {fig.note}")
    lines += res.notes
    return lines


def render_plain(res: BenchReport) -> str:
    header = ("measurement", "median", "min", "max", "goal", "")
    body = [r[1:] for r in rows(res)]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    lines = []
    group = None
    for fig_row, row in zip(rows(res), body, strict=True):
        if fig_row[0] != group:
            group = fig_row[0]
            lines.append(f"[{group}]")
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) if i < 4
                               else str(c).ljust(w) for i, (c, w) in enumerate(
                                   zip(row, widths, strict=True))).rstrip())
    head = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) if i < 4 else h.ljust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True))).rstrip()
    return "\n".join([head, *lines, "", *summary_lines(res)]) + "\n"


def print_report(res: BenchReport) -> None:
    from lab.report.text import styled, terminal_console, write_plain

    console = terminal_console()
    if not styled(console):
        write_plain(console, render_plain(res))
        return
    from rich.table import Table

    table = Table(title="ibcm-lab bench", title_justify="left")
    for name, justify in (("measurement", "left"), ("median", "right"), ("min", "right"),
                          ("max", "right"), ("goal", "left"), ("", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    group = None
    for row in rows(res):
        if row[0] != group:
            if group is not None:
                table.add_section()
            group = row[0]
        status = row[6]
        style = "green" if status == "met" else "bold red" if status == "MISSED" else ""
        table.add_row(*row[1:6], f"[{style}]{status}[/]" if style else status)
    console.print(table)
    for line in summary_lines(res):
        console.print(line, markup=False, highlight=False)


def to_json(res: BenchReport) -> dict[str, Any]:
    return {
        "date": res.started.isoformat(timespec="seconds"),
        "machine": res.machine,
        "quick": res.quick,
        "repeat": res.repeat,
        "parallel_speedup": res.speedup,
        "wall_s": round(res.wall_s, 2),
        "figures": [{
            "group": f.group, "key": f.key, "label": f.label, "unit": f.unit,
            "median": f.median, "min": f.min, "max": f.max, "samples": f.samples,
            "goal": None if f.goal is None else {"op": f.goal.op, "value": f.goal.value,
                                                 "text": f.goal.text},
            "met": res.met(f), "note": f.note,
        } for f in res.figures],
        "skipped": [{"measurement": g, "why": w} for g, w in res.skipped],
        "errors": [{"measurement": g, "error": w} for g, w in res.errors],
        "notes": res.notes,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` whole or not at all (a UsageError says why not)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ibcm-lab-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"--json {path}: cannot write it ({e.strerror or e})") from None
