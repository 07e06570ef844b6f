"""The HTML report of a run or a matrix: one self-contained file (inline CSS, no script, no
external asset), rendered with Jinja2 with autoescaping on (scenario text is user input).

``ibcm-lab run --format html``: a summary, then per scenario its title, source and
description and, per client, each step as a timeline: the management point, the TLS
connection (host, OpenSSL's verify code, whether the two judges agree), every CDP URL
attempt with its result and simulated time, the verdict (error name and code, WinHTTP flags,
HTTP status), the log lines of the step as CMTrace shows them, the certutil-style trace, the
explanation and the fix. Passing and failing steps differ in colour *and* in a text badge
(PASS/MISS for the expectation, ok/FAIL for the outcome).

``ibcm-lab matrix --format html``: the coloured grid (rows = configurations, columns = client
situations, each cell ``ok`` or the short failure name) with its legend; every cell links to
its detail section, which shows the steps of that cell with the same timeline.

The templates live in ``lab/report/templates/``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import jinja2
import markupsafe

from lab.clock import zone_info
from lab.logs.cmtrace import format_entries
from lab.names import printable
from lab.report.certutil import render_step_trace
from lab.report.jsonout import step_dict
from lab.report.junit import row_label, summary, testcase_name
from lab.results.grid import DIMENSIONS, SITUATION_BY_KEY
from lab.results.logline import LogLine
from lab.results.matrix import MatrixResult
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult

SEVERITY = {1: "I", 2: "W", 3: "E"}
"""CMTrace ``type`` as a letter (CMTrace itself highlights 2 yellow and 3 red)."""

PALETTE = ("f2b8b5", "f9d49b", "e8c3f0", "b9d7f4", "f6c6de", "d9d0c0", "f7e08a", "c6d2f5",
           "f3c7a8", "d2c2f2", "e7b0b0", "c9e3e8")
"""Background colours for the matrix's failure names (ok is green); every cell also shows
its name as text."""


def _safe_value(value: object) -> object:
    """Every ``{{ value }}`` of a template: a string from the run (a title, a file name, a
    certificate field) keeps its line breaks and tabs but shows any other control character
    escaped (ESC and BEL are not HTML's to escape, and a browser or a ``cat`` of the file would
    pass them on). Markup the templates made themselves passes unchanged."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return printable(value, keep="\r\n\t")
    return value


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment: package templates, autoescape on, undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_safe_value,
    )
    env.globals["palette"] = PALETTE
    return env


def _version() -> str:
    from lab import __version__

    return __version__


# -- one step --------------------------------------------------------------------------------

def _tls(step: Mapping[str, Any]) -> dict[str, Any]:
    """What the timeline says about the connection: ``kind`` https / http / none."""
    target = step.get("target")
    if not target:
        return {"kind": "none", "host": None}
    parts = urlsplit(str(target))
    host = parts.netloc or str(target)
    if parts.scheme.lower() != "https":
        return {"kind": "http", "host": host}
    return {"kind": "https", "host": host}


def _urls(step: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for u in (step.get("revocation") or {}).get("urls") or []:
        out.append({**u, "seconds": f"{int(u.get('simulated_ms') or 0) / 1000:g}"})
    return out


def _log_rows(step: Mapping[str, Any], lines: Sequence[LogLine] | None,
              timezone: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """CMTrace-viewer rows (text, component, time, thread, type) and the raw entries."""
    if lines is not None and timezone is not None and lines \
            and any(ln.time is not None for ln in lines):
        tz = zone_info(timezone)
        raw = format_entries(lines, tz)
        rows = []
        for ln, entry in zip(lines, raw, strict=True):
            when = ln.time.astimezone(tz) if ln.time is not None else None
            rows.append({
                "text": ln.text, "component": ln.component, "file": ln.file,
                "type": ln.severity, "letter": SEVERITY.get(ln.severity, "?"),
                "time": (f"{when:%m-%d-%Y %H:%M:%S}.{when.microsecond // 1000:03d}"
                         if when is not None else ""),
                "thread": str(ln.thread), "raw": entry,
            })
        return rows, raw
    rows = [{"text": x["text"], "component": x["component"], "file": x["file"],
             "type": int(x.get("type", 1)), "letter": SEVERITY.get(int(x.get("type", 1)), "?"),
             "time": "", "thread": "", "raw": ""}
            for x in step.get("log") or []]
    return rows, []


def step_view(step: Mapping[str, Any], index: int, anchor: str, *,
              log: Sequence[LogLine] | None = None, timezone: str | None = None,
              trace: str | None = None, refs: Sequence[str] = (),
              judged: bool = True) -> dict[str, Any]:
    """Everything the step template shows, from a step dict (the fields of
    ``run --format json``) and, for a run, the step's log lines, its trace and log refs.

    ``judged``: the step has an expectation to meet (a run): it is coloured and badged
    PASS/MISS. A matrix step (no expectation) is coloured by its outcome, badged ok/FAIL.
    """
    rows, raw = _log_rows(step, log, timezone)
    winhttp = step.get("winhttp") or {}
    return {
        "d": step,
        "n": step.get("number") or index + 1,
        "automatic": bool(step.get("automatic")),
        "name": testcase_name(index, step),
        "anchor": anchor,
        "summary": summary(step),
        "detail": "" if step["outcome"] == "ok" else summary(step).removeprefix("FAIL").strip(),
        "judged": judged,
        "state": ("pass" if step["met"] else "miss") if judged
        else ("pass" if step["outcome"] == "ok" else "miss"),
        "tls": _tls(step),
        "urls": _urls(step),
        "rev_status": (step.get("revocation") or {}).get("status"),
        "rev_checked": bool((step.get("revocation") or {}).get("checked")),
        "flags": ", ".join(winhttp.get("flags") or []),
        "flags_value": f"0x{int(winhttp.get('flags_value') or 0):x}",
        "seconds": f"{int(step.get('simulated_ms') or 0) / 1000:g}",
        "log": rows,
        "raw_log": raw,
        "trace": trace,
        "refs": list(refs),
        "open": step["outcome"] == "fail" or not step["met"],
    }


def _run_step(step: StepResult, anchor: str, timezone: str) -> dict[str, Any]:
    return step_view(step_dict(step), step.index, anchor, log=step.log, timezone=timezone,
                     trace=render_step_trace(step, timezone=timezone), refs=step.log_refs)


def _scenario_view(result: ScenarioResult, number: int) -> dict[str, Any]:
    s = result.scenario
    tz = s.info.timezone
    clients = []
    for c_index, client in enumerate(result.clients, start=1):
        views = [_run_step(st, f"sc{number}-c{c_index}-s{st.number}", tz)
                 for st in client.steps]
        clients.append({"name": client.name, "steps": views,
                        "met": sum(1 for st in client.steps if st.met and not st.automatic),
                        "judged": sum(1 for st in client.steps if not st.automatic)})
    steps = result.steps
    judged = [st for st in steps if not st.automatic]
    refusal = result.pki.mp_refusal
    return {
        "anchor": f"sc{number}",
        "number": number,
        "name": s.name,
        "title": s.info.title,
        "source": s.info.source,
        "description": s.info.description.strip(),
        "file": s.file,
        "timezone": tz,
        "passed": result.passed,
        "met": sum(1 for st in judged if st.met),
        "steps": len(judged),
        "wall": f"{result.wall_ms / 1000:.2f}",
        "simulated": f"{sum(st.simulated_ms for st in steps) / 1000:g}",
        "refusal": refusal.message if refusal is not None else None,
        "clients": clients,
    }


def render_run_html(run: RunResult) -> str:
    """The run as one self-contained HTML page."""
    scenarios = [_scenario_view(r, i) for i, r in enumerate(run.scenarios, start=1)]
    steps = [st for r in run.scenarios for st in r.steps]
    summary_ = {
        "scenarios": len(run.scenarios),
        "passed": sum(1 for r in run.scenarios if r.passed),
        "steps": sum(1 for st in steps if not st.automatic),
        "met": sum(1 for st in steps if st.met and not st.automatic),
        "wall": f"{run.wall_ms / 1000:.1f}",
        "simulated": f"{sum(st.simulated_ms for st in steps) / 1000:g}",
        "disagree": sum(1 for st in steps if st.judges_agree is False),
        "all_passed": run.passed,
    }
    return environment().get_template("run.html").render(
        summary=summary_, scenarios=scenarios, version=_version())


# -- a matrix ----------------------------------------------------------------------------------

def _colours(shorts: Sequence[str]) -> dict[str, str]:
    """A CSS class per failure name (``ok`` is always ``c-ok``)."""
    out = {"ok": "c-ok"}
    for i, short in enumerate(s for s in shorts if s != "ok"):
        out[short] = f"c{i % len(PALETTE)}"
    return out


def render_matrix_html(result: MatrixResult) -> str:
    """The matrix as one self-contained HTML page: grid, legend, one section per cell."""
    legend = result.legend()
    used = list(dict.fromkeys([*legend, *(c.short for r in result.rows
                                          for c in r.cells.values() if c.short != "ok")]))
    colours = _colours(used)
    situations = [{"key": k, "title": SITUATION_BY_KEY[k].title}
                  for k in result.selection.situations]
    dims = [{"key": d.key, "title": d.title,
             "choices": [(v, d.labels.get(v, v)) for v in result.selection.values[d.key]]}
            for d in DIMENSIONS]
    rows: list[dict[str, Any]] = []
    for r_index, row in enumerate(result.rows, start=1):
        cells: list[dict[str, Any]] = []
        for key in result.selection.situations:
            cell = row.cells.get(key)
            if cell is None:
                continue
            anchor = f"r{r_index}-{key}"
            steps = [step_view(st, i, f"{anchor}-s{i + 1}", judged=False)
                     for i, st in enumerate(cell.steps)]
            cells.append({
                "anchor": anchor, "situation": key,
                "situation_title": SITUATION_BY_KEY[key].title if key in SITUATION_BY_KEY
                else key,
                "short": cell.short, "ok": cell.short == "ok",
                "colour": colours.get(cell.short, "c0"), "failed_step": cell.failed_step,
                "explanation": cell.explanation, "fix": cell.fix, "steps": steps,
            })
        rows.append({"number": r_index, "config": row.config, "label": row_label(row.config),
                     "cells": cells})
    all_cells = [c for r in rows for c in r["cells"]]
    summary_ = {
        "rows": len(rows), "cells": len(all_cells),
        "ok": sum(1 for c in all_cells if c["ok"]),
        "wall": f"{result.wall_ms / 1000:.1f}", "jobs": result.jobs,
        "rate": f"{result.cells_per_second:.1f}",
    }
    legend_rows = [{"short": s, "line": legend.get(s, ""), "colour": colours[s]}
                   for s in used]
    return environment().get_template("matrix.html").render(
        summary=summary_, dims=dims, situations=situations, rows=rows, legend=legend_rows,
        version=_version())


__all__ = ["environment", "render_matrix_html", "render_run_html", "step_view"]
