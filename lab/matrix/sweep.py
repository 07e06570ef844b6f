"""``ibcm-lab matrix``: which IBCM configurations work from where.

Every combination of the dimensions that decide IBCM outcomes becomes one scenario (a row);
each client situation is a client of that scenario (a column). Rows run in one lab per
worker process (servers started once, keys and certificates from the shared cache), on all
cores when ``jobs`` > 1. A cell is ``ok`` or the short name of the first failure; the legend
explains each name in one line. Cells carry the same step fields as ``run --format json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import MappingProxyType

from lab.clock import Clock
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.errors import UsageError
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.report.jsonout import step_dict
from lab.results.grid import (
    DIMENSION_BY_KEY,
    DIMENSIONS,
    SITUATION_BY_KEY,
    SITUATIONS,
    Situation,
    situation_steps,
)
from lab.results.matrix import Cell, MatrixResult, Row, Selection, row_name, short_name
from lab.results.runs import RunResult, ScenarioResult
from lab.run import run_loaded
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
)

__all__ = ["make_selection", "run_matrix", "scenario_for"]

INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
PUBLISHED_CRL = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"
WILDCARD = "*.public.com"
"""The ``names = wildcard`` row's second SAN: covers INTERNET, one label deep (reference §3.6)."""


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
            if v not in dim.values + dim.extra:
                raise UsageError(f"--{dim.key.replace('_', '-')}: expected values from "
                                 f"{', '.join(dim.values + dim.extra)}, got {v!r}")
        values[dim.key] = tuple(dict.fromkeys(chosen))
    sits = tuple(situations) if situations else tuple(s.key for s in SITUATIONS)
    for s in sits:
        if s not in SITUATION_BY_KEY:
            raise UsageError(f"--clients: expected values from "
                             f"{', '.join(SITUATION_BY_KEY)}, got {s!r}")
    return Selection(MappingProxyType(values), tuple(dict.fromkeys(sits)))


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
    san = {"both": (INTRA, INTERNET), "intranet": (INTRA,), "internet": (INTERNET,),
           "wildcard": (INTRA, WILDCARD)}
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
            steps=situation_steps(sit)))
    title = ", ".join(f"{DIMENSION_BY_KEY[k].title}: {v}" for k, v in config.items())
    return Scenario(
        name=row_name(config), file=None,
        info=ScenarioInfo(title=title, source="ibcm-lab matrix"),
        site=Site(code="P01", check_crl=config["site_crl"] == "on", https_only=True),
        cas=(server_ca, client_ca), mp=mp, network=NetworkSpec(), clients=tuple(clients))


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
            failed_step=client.steps.index(failed) + 1 if failed else None,
            explanation=failed.explanation if failed else client.steps[-1].explanation,
            fix=failed.fix if failed else "",
            steps=[step_dict(s) for s in client.steps])
    return cells


_stopping = False
"""In a worker process: the parent asked it to stop; every batch still queued ends at once."""


def _ask_to_stop(signum: int, frame: object) -> None:
    global _stopping
    _stopping = True


def _worker_start() -> None:
    """A worker ignores the terminal's Ctrl-C (it reaches the whole process group, and a
    second SIGINT would interrupt the clean-up of the first): the parent decides, and sends
    each worker one SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _ask_to_stop)


async def _run_cancellable(scenarios: list[Scenario], certs: str) -> RunResult:
    """``run_loaded``, cancelled (servers stopped, temporary files removed) on SIGTERM."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def stop() -> None:
        global _stopping
        if not _stopping:
            _stopping = True
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        return await run_loaded(scenarios, certs=certs)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _ask_to_stop)


def _run_rows(configs: list[dict[str, str]], situations: tuple[str, ...],
              certs: str, *, worker: bool = False) -> list[Row]:
    if _stopping:
        raise KeyboardInterrupt
    scenarios = [scenario_for(c, situations) for c in configs]
    if worker:
        try:
            result = asyncio.run(_run_cancellable(scenarios, certs))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
    else:
        result = asyncio.run(run_loaded(scenarios, certs=certs))
    return [Row(config, _cells(r)) for config, r in zip(configs, result.scenarios, strict=True)]


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued, ask every worker to stop (one SIGTERM each: the lab it runs is
    cancelled, its servers stopped and temporary files removed) and wait for them to exit."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, OSError):
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
    pool.shutdown(wait=True)


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
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_start)
        try:
            futures = {pool.submit(_run_rows, [configs[i] for i in batch],
                                   selection.situations, certs, worker=True): batch
                       for batch in batches}
            for future in as_completed(futures):
                batch = futures[future]
                for i, row in zip(batch, future.result(), strict=True):
                    rows[i] = row
                done += len(batch) * per_row
                if progress:
                    progress(done, total)
        except BaseException:
            # Ctrl-C, SIGTERM or a failed batch: the pool is cancelled, not drained
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
    result = MatrixResult(selection, [r for r in rows if r is not None],
                          (time.perf_counter() - started) * 1000, jobs)
    return result
