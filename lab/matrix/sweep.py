"""``ibcm-lab matrix``: which IBCM configurations work from where.

Every combination of the dimensions that decide IBCM outcomes becomes one scenario (a row);
each client situation is a client of that scenario (a column). Rows run in one lab per
worker process (servers started once, keys and certificates from the shared cache), on all
cores when ``jobs`` > 1. A cell is ``ok`` or the short name of the first failure; the legend
explains each name in one line. Cells carry the same step fields as ``run --format json``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lab.clock import Clock
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.errors import UsageError
from lab.judge.verdict import StepResult
from lab.matrix.spec import (
    ACTIONS,
    DIMENSION_BY_KEY,
    DIMENSIONS,
    SITUATION_BY_KEY,
    SITUATIONS,
    Dimension,
    Situation,
)
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.report.jsonout import step_dict
from lab.run import ScenarioResult, run_loaded
from lab.scenario.model import (
    CAKind,
    CASpec,
    CertSpec,
    ClientSpec,
    MPSpec,
    NetworkSpec,
    Scenario,
    ScenarioInfo,
    Site,
    StepSpec,
)

__all__ = ["ACTIONS", "DIMENSIONS", "DIMENSION_BY_KEY", "SITUATIONS", "SITUATION_BY_KEY",
           "Cell", "Dimension", "MatrixResult", "Row", "Selection", "Situation", "fold",
           "make_selection", "run_matrix", "scenario_for"]

INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
PUBLISHED_CRL = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"


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


def make_selection(choices: Mapping[str, Sequence[str] | None],
                   situations: Sequence[str] | None = None) -> Selection:
    """Validate ``choices`` (dimension key -> values, None = all) and situations."""
    values: dict[str, tuple[str, ...]] = {}
    for dim in DIMENSIONS:
        chosen = choices.get(dim.key)
        if chosen is None:
            values[dim.key] = dim.values
            continue
        for v in chosen:
            if v not in dim.values:
                raise UsageError(f"--{dim.key.replace('_', '-')}: expected values from "
                                 f"{', '.join(dim.values)}, got {v!r}")
        values[dim.key] = tuple(dict.fromkeys(chosen))
    sits = tuple(situations) if situations else tuple(s.key for s in SITUATIONS)
    for s in sits:
        if s not in SITUATION_BY_KEY:
            raise UsageError(f"--clients: expected values from "
                             f"{', '.join(SITUATION_BY_KEY)}, got {s!r}")
    return Selection(MappingProxyType(values), tuple(dict.fromkeys(sits)))


def row_name(config: Mapping[str, str]) -> str:
    return "matrix-" + "-".join(config[d.key] for d in DIMENSIONS).replace("+", "_")


def scenario_for(config: Mapping[str, str], situations: Sequence[str | Situation]) -> Scenario:
    """The scenario of one matrix row: one client per situation (a key of
    :data:`SITUATIONS`, or a :class:`Situation` of the caller's own, as the training console
    builds for a location and domain membership the grid has no column for)."""
    cdp = {"ldap": ("ldap",), "ldap+http-intranet": ("ldap", "http"),
           "ldap+http-internet": ("ldap", PUBLISHED_CRL), "http-internet": (PUBLISHED_CRL,),
           "none": ()}[config["cdp"]]
    server_ca = CASpec(name="Contoso-CA", kind=CAKind.ENTERPRISE, host="ca01.contoso.local",
                       domain="contoso.local", cdp=cdp)
    # Client certificates come from a separate, healthy CA: the matrix asks about the MP's
    # certificate, not about IIS checking the clients'.
    client_ca = CASpec(name="Contoso-Clients-CA", kind=CAKind.ENTERPRISE,
                       host="ca03.contoso.local", domain="contoso.local")
    san = {"both": (INTRA, INTERNET), "intranet": (INTRA,), "internet": (INTERNET,)}
    mp = MPSpec(intranet_fqdn=INTRA, internet_fqdn=INTERNET,
                cert=CertSpec(issuer="Contoso-CA", san=san[config["names"]]))
    line = "ccmsetup.exe /UsePKICert"
    if config["nocrlcheck"] == "yes":
        line += " /NoCRLCheck"
    line += " SMSSITECODE=P01 SMSMP=" + ("https://" if config["smsmp"] == "https" else "") + INTRA
    if config["ccmhostname"] == "given":
        line += f" CCMHOSTNAME={INTERNET}"
    command = parse_ccmsetup(line)
    clients = []
    for item in situations:
        sit = item if isinstance(item, Situation) else SITUATION_BY_KEY[item]
        name = sit.key.upper()[:12]
        fqdn = f"{name}.contoso.local" if sit.domain_joined else name
        clients.append(ClientSpec(
            name=name, domain_joined=sit.domain_joined, ccmsetup=command, fqdn=fqdn,
            certs=(CertSpec(issuer="Contoso-Clients-CA", san=(fqdn,)),),
            steps=tuple(StepSpec(a, z) for a, z in zip(ACTIONS, sit.zones, strict=True))))
    title = ", ".join(f"{DIMENSION_BY_KEY[k].title}: {v}" for k, v in config.items())
    return Scenario(
        name=row_name(config), file=None,
        info=ScenarioInfo(title=title, source="ibcm-lab matrix"),
        site=Site(code="P01", check_crl=config["site_crl"] == "on", https_only=True),
        cas=(server_ca, client_ca), mp=mp, network=NetworkSpec(), clients=tuple(clients))


@dataclass
class Cell:
    situation: str
    outcome: str
    short: str
    """``ok`` or the short failure name (see :data:`LEGEND`)."""
    failed_step: int | None
    """1-based index of the first failing step, or None."""
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


def _cells(result: ScenarioResult) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for client, key in zip(result.clients, (c.name for c in result.scenario.clients),
                           strict=True):
        situation = next(s for s in SITUATIONS if s.key.upper()[:12] == key)
        failed = next((s for s in client.steps if s.outcome == "fail"), None)
        cells[situation.key] = Cell(
            situation=situation.key,
            outcome="fail" if failed else "ok",
            short=short_name(failed) if failed else "ok",
            failed_step=failed.index + 1 if failed else None,
            explanation=failed.explanation if failed else client.steps[-1].explanation,
            fix=failed.fix if failed else "",
            steps=[step_dict(s) for s in client.steps])
    return cells


def _run_rows(configs: list[dict[str, str]], situations: tuple[str, ...],
              certs: str) -> list[Row]:
    scenarios = [scenario_for(c, situations) for c in configs]
    result = asyncio.run(run_loaded(scenarios, certs=certs))
    return [Row(config, _cells(r)) for config, r in zip(configs, result.scenarios, strict=True)]


def _prewarm(configs: Iterable[dict[str, str]], situations: tuple[str, ...],
             certs: str) -> None:
    """Build each distinct PKI once, so worker processes only read the cache."""
    cache = PKICache(certs)
    seen: set[tuple[str, str]] = set()
    for config in configs:
        key = (config["cdp"], config["names"])
        if key not in seen:
            seen.add(key)
            build_pki(scenario_for(config, situations), Clock(), cache)


def run_matrix(selection: Selection, *, certs: str | Path = "certs", jobs: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> MatrixResult:
    """Run every row of ``selection``; ``progress(done_cells, total_cells)`` is called as
    rows finish."""
    started = time.perf_counter()
    configs = selection.rows
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(configs)))
    certs = str(certs)
    _prewarm(configs, selection.situations, certs)
    per_row = len(selection.situations)
    total = len(configs) * per_row
    rows: list[Row | None] = [None] * len(configs)
    chunk = max(1, min(16, len(configs) // (jobs * 4) or 1))
    batches = [list(range(i, min(i + chunk, len(configs))))
               for i in range(0, len(configs), chunk)]
    done = 0
    if jobs == 1:
        for batch in batches:
            for i, row in zip(batch, _run_rows([configs[i] for i in batch],
                                               selection.situations, certs), strict=True):
                rows[i] = row
            done += len(batch) * per_row
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_run_rows, [configs[i] for i in batch],
                                   selection.situations, certs): batch for batch in batches}
            for future in as_completed(futures):
                batch = futures[future]
                for i, row in zip(batch, future.result(), strict=True):
                    rows[i] = row
                done += len(batch) * per_row
                if progress:
                    progress(done, total)
    result = MatrixResult(selection, [r for r in rows if r is not None],
                          (time.perf_counter() - started) * 1000, jobs)
    return result


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
