"""The matrix's results, as plain data: rows (configurations) of cells (client situations),
the short failure names of the grid and its legend, and how rows fold.

The sweep (:mod:`lab.matrix.sweep`) fills these in; the reports (:mod:`lab.report`) render them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.results.grid import DIMENSIONS
from lab.results.verdicts import StepResult

# Short failure names for the grid, each explained in one line in the legend.
SHORT_NAMES: tuple[tuple[str, str, str], ...] = (
    # (identifier that selects it, short name, legend line)
    ("403.4", "403.4", "HTTP 403.4: the client used HTTP (SMSMP without https://); the MP "
                       "accepts HTTPS only"),
    ("CRYPT_E_REVOKED", "REVOKED", "CRYPT_E_REVOKED: a good CRL lists the certificate"),
    ("CERT_E_CN_NO_MATCH", "NAME", "CERT_E_CN_NO_MATCH: the FQDN the client used is not in the "
                                   "MP certificate"),
    ("CRYPT_E_REVOCATION_OFFLINE", "CRL-OFFLINE", "CRYPT_E_REVOCATION_OFFLINE: no CDP URL gave "
                                                  "a good CRL from where the client is"),
    ("CRYPT_E_NO_REVOCATION_CHECK", "NO-CDP", "CRYPT_E_NO_REVOCATION_CHECK: the certificate "
                                              "has no CDP, yet the client checks revocation"),
    ("LAB_NO_INTERNET_MP", "NO-INET-MP", "the client on the internet knows no internet MP "
                                         "(no CCMHOSTNAME, not learned)"),
    ("0x87D00269", "NO-MP", "0x87D00269: no usable management point"),
    ("403.13", "403.13", "HTTP 403.13: IIS could not check (or found revoked) the client "
                         "certificate"),
    ("ERROR_WINHTTP_NAME_NOT_RESOLVED", "UNRESOLVED", "the MP's name does not resolve from "
                                                      "where the client is"),
)
LEGEND = {short: line for _, short, line in SHORT_NAMES}


def short_name(step: StepResult | Mapping[str, Any]) -> str:
    ids = set(step.identifiers if isinstance(step, StepResult) else step["identifiers"])
    for ident, short, _ in SHORT_NAMES:
        if ident.upper() in ids:
            return short
    if isinstance(step, StepResult):
        return step.error.name if step.error else "FAIL"
    error = step.get("error")
    return str(error["name"]) if isinstance(error, Mapping) else "FAIL"


@dataclass(frozen=True)
class Selection:
    """The values of each dimension and the situations a matrix covers."""

    values: Mapping[str, tuple[str, ...]]
    situations: tuple[str, ...]

    @property
    def rows(self) -> list[dict[str, str]]:
        keys = [d.key for d in DIMENSIONS]
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.values[k] for k in keys))]


def row_name(config: Mapping[str, str]) -> str:
    return "matrix-" + "-".join(config[d.key] for d in DIMENSIONS).replace("+", "_")


@dataclass
class Cell:
    situation: str
    outcome: str
    short: str
    """``ok`` or the short failure name (see :data:`LEGEND`)."""
    failed_step: int | None
    """1-based position in :attr:`steps` of the first failing step (ccmexec's automatic steps
    after the install count: they are steps 2 and 3), or None."""
    explanation: str
    fix: str
    steps: list[dict[str, Any]]
    """The steps, with the fields of ``run --format json``."""


@dataclass
class Row:
    config: dict[str, str]
    cells: dict[str, Cell]

    @property
    def shorts(self) -> tuple[str, ...]:
        return tuple(c.short for c in self.cells.values())


@dataclass
class MatrixResult:
    selection: Selection
    rows: list[Row] = field(default_factory=list)
    wall_ms: float = 0.0
    jobs: int = 1

    @property
    def cells(self) -> int:
        return sum(len(r.cells) for r in self.rows)

    @property
    def cells_per_second(self) -> float:
        return self.cells / (self.wall_ms / 1000) if self.wall_ms else 0.0

    def legend(self) -> dict[str, str]:
        used = {c.short for r in self.rows for c in r.cells.values() if c.short != "ok"}
        out = {s: LEGEND[s] for s in LEGEND if s in used}
        for s in sorted(used - set(LEGEND)):
            out[s] = next(c.explanation for r in self.rows for c in r.cells.values()
                          if c.short == s).split(". ")[0]
        return out


def fold(rows: Sequence[Row], selection: Selection) -> list[tuple[dict[str, str], Row]]:
    """Merge rows that differ in one dimension only and have the same cells: that dimension
    shows ``*`` (it does not matter there). Returns (display config, representative row)."""
    current = [(dict(r.config), r) for r in rows]
    changed = True
    while changed:
        changed = False
        for dim in DIMENSIONS:
            values = set(selection.values[dim.key])
            if len(values) < 2:
                continue
            groups: dict[tuple[Any, ...], list[tuple[dict[str, str], Row]]] = {}
            for config, row in current:
                key = (tuple((k, v) for k, v in config.items() if k != dim.key), row.shorts)
                groups.setdefault(key, []).append((config, row))
            merged: list[tuple[dict[str, str], Row]] = []
            for group in groups.values():
                have = {config[dim.key] for config, _ in group}
                if have == values and len(group) == len(values):
                    config = dict(group[0][0])
                    config[dim.key] = "*"
                    merged.append((config, group[0][1]))
                    changed = True
                else:
                    merged.extend(group)
            order = {id(r): i for i, r in enumerate(rows)}
            current = sorted(merged, key=lambda item: order.get(id(item[1]), 0))
    return current


__all__ = ["LEGEND", "SHORT_NAMES", "Cell", "MatrixResult", "Row", "Selection", "fold",
           "row_name", "short_name"]
