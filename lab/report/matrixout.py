"""The matrix on a terminal (rich grid, progress bar) and as JSON or CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lab.files import write_atomic
from lab.results.grid import DIMENSIONS, SITUATION_BY_KEY
from lab.results.matrix import MatrixResult, fold

HEADERS = {"cdp": "CDP", "site_crl": "site CRL", "nocrlcheck": "/NoCRLCheck",
           "names": "MP names", "smsmp": "SMSMP", "ccmhostname": "CCMHOSTNAME"}


def _console(file: Any = None) -> Console:
    plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
    terminal = file is None and sys.stdout.isatty()
    # Off a terminal the grid is never cut to 80 columns: files and pipes get it whole.
    return Console(file=file, no_color=plain, highlight=False, soft_wrap=False,
                   width=None if terminal else 200)


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[int, int], None]]:
    """A progress callback: a rich bar on a terminal (stderr), silent otherwise."""
    if not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        yield lambda done, total: None
        return
    with Progress(TextColumn("matrix"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("cells"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("cells", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def grid_table(result: MatrixResult, *, fold_rows: bool = True) -> Table:
    rows = (fold(result.rows, result.selection) if fold_rows
            else [(dict(r.config), r) for r in result.rows])
    table = Table(title="IBCM configuration matrix", title_justify="left", show_lines=False,
                  pad_edge=False)
    for dim in DIMENSIONS:
        if len(result.selection.values[dim.key]) > 1 or not fold_rows:
            table.add_column(HEADERS[dim.key], no_wrap=True)
    for key in result.selection.situations:
        table.add_column(key, no_wrap=True)
    for config, row in rows:
        dims = [config[d.key] for d in DIMENSIONS
                if len(result.selection.values[d.key]) > 1 or not fold_rows]
        cells = []
        for key in result.selection.situations:
            short = row.cells[key].short
            cells.append("[green]ok[/green]" if short == "ok" else f"[bold red]{short}[/]")
        table.add_row(*dims, *cells)
    return table


def print_grid(result: MatrixResult, *, fold_rows: bool = True, out: str | None = None) -> None:
    """The grid, the fixed dimensions, the legend and the speed, on a terminal or to ``out``."""
    buffer = io.StringIO() if out else None
    console = _console(buffer)
    fixed = [f"{d.title}: {result.selection.values[d.key][0]}" for d in DIMENSIONS
             if len(result.selection.values[d.key]) == 1]
    if fixed and fold_rows:
        console.print("Fixed: " + "; ".join(fixed))
    console.print(grid_table(result, fold_rows=fold_rows))
    if fold_rows:
        console.print("[dim]* = any value: rows that differ only there have the same cells "
                      "(--no-fold shows every row)[/dim]")
    console.print("Columns: " + "; ".join(f"{k} = {SITUATION_BY_KEY[k].title}"
                                          for k in result.selection.situations))
    legend = result.legend()
    if legend:
        console.print("Legend:")
        for short, line in legend.items():
            console.print(f"  [bold red]{short:<12}[/] {line}")
    console.print(f"{result.cells} cells in {result.wall_ms / 1000:.1f} s "
                  f"({result.cells_per_second:.0f} cells/s, {result.jobs} worker"
                  f"{'s' if result.jobs != 1 else ''})")
    if buffer is not None and out is not None:
        write_atomic(out, buffer.getvalue().encode("utf-8"))


def matrix_dict(result: MatrixResult) -> dict[str, Any]:
    return {
        "dimensions": {d.key: {"title": d.title, "values": list(result.selection.values[d.key]),
                               "labels": dict(d.labels)} for d in DIMENSIONS},
        "situations": [{"key": k, "title": SITUATION_BY_KEY[k].title}
                       for k in result.selection.situations],
        "legend": result.legend(),
        "cells": result.cells,
        "wall_ms": round(result.wall_ms, 1),
        "cells_per_second": round(result.cells_per_second, 1),
        "jobs": result.jobs,
        "rows": [{
            "config": row.config,
            "cells": {key: {
                "situation": cell.situation, "outcome": cell.outcome, "short": cell.short,
                "failed_step": cell.failed_step, "explanation": cell.explanation,
                "fix": cell.fix, "steps": cell.steps,
            } for key, cell in row.cells.items()},
        } for row in result.rows],
    }


def render_json(result: MatrixResult) -> str:
    return json.dumps(matrix_dict(result), indent=2, ensure_ascii=False) + "\n"


CSV_STEP_FIELDS = ("action", "location", "target", "outcome", "expected", "met")


def render_csv(result: MatrixResult) -> str:
    """One line per cell: the configuration, the cell, and the step fields of the step that
    decided it (the first failing step, else the last)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = [d.key for d in DIMENSIONS] + [
        "situation", "cell", "failed_step", *CSV_STEP_FIELDS, "error_name", "error_code",
        "winhttp_error", "winhttp_flags", "http_status", "openssl_verify_code",
        "openssl_verify_message", "revocation_checked", "revocation_urls", "simulated_ms",
        "explanation", "fix"]
    writer.writerow(header)
    for row in result.rows:
        for key, cell in row.cells.items():
            step = cell.steps[cell.failed_step - 1] if cell.failed_step else cell.steps[-1]
            error = step["error"] or {}
            winhttp = step["winhttp"]
            openssl = step["openssl"] or {}
            rev = step["revocation"]
            writer.writerow([
                *(row.config[d.key] for d in DIMENSIONS), key, cell.short, cell.failed_step or "",
                *(step[f] if step[f] is not None else "" for f in CSV_STEP_FIELDS),
                error.get("name", ""), error.get("code") or "",
                (winhttp["error"] or {}).get("name", ""), "|".join(winhttp["flags"]),
                step["http_status"] or "", openssl.get("verify_code", ""),
                openssl.get("verify_message", ""), rev["checked"],
                " ".join(f"{u['url']}={u['result']}:{u['simulated_ms']}ms" for u in rev["urls"]),
                step["simulated_ms"], step["explanation"], step["fix"],
            ])
    return buffer.getvalue()
