"""The measurements that time the lab itself: a new interpreter running ``run``, ``--help``
and ``demo`` (cold and warm), and the matrix against its floor, what one cell's real network
work costs on its own (:func:`floor_costs`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import BenchError
from lab.protocols.network import LOOPBACK
from lab.tools.bench.figures import BenchReport, Goal, Sizes
from lab.tools.bench.loadgen import MPLIST, close_writer, exchange, get_request
from lab.tools.bench.scenario import INTERNET, INTRA

if TYPE_CHECKING:
    from lab.results.matrix import Selection

SINGLE_SCENARIO = "seed4-internet-client-ldap-cdp-crl-on.toml"
FLOOR_NOTE = ("floor = the cell's MP connections x a bare mutual-TLS handshake + its CDP "
              "connections x a bare CRL GET + its plain MP connections x a bare GET, each unit "
              "timed serially in one lab in the same run; counts from one serial pass over "
              "the full selection (connections each lab server accepted)")


# -- subprocess wall times ------------------------------------------------------------------


def _lab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def _wall(command: list[str], *, ok: tuple[int, ...] = (0,), cwd: str | None = None) -> float:
    """Wall time of ``command`` (seconds), interpreter start included."""
    env = {k: v for k, v in os.environ.items() if k != "IBCM_LAB_CERTS"}
    began = time.perf_counter()
    try:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, cwd=cwd, timeout=900)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(command[2:])} did not finish in 15 min") from e
    elapsed = time.perf_counter() - began
    if done.returncode not in ok:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(command[2:])} exited {done.returncode}: {' '.join(err)}")
    return elapsed


def _single_scenario() -> Path:
    from lab.tools.demo import bundled_dir

    return bundled_dir() / SINGLE_SCENARIO


def bench_cold(res: BenchReport, certs: str) -> None:
    samples = []
    for _ in range(res.repeat):
        with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-cold-") as empty:
            samples.append(_wall(_lab_command("run", str(_single_scenario()), "--certs", empty)))
    res.add("cold", "cold_run_s", f"run {SINGLE_SCENARIO.removesuffix('.toml')}, empty certs/",
            "s", samples, note="interpreter start, key generation, servers, 7 steps")


def bench_warm(res: BenchReport, certs: str) -> None:
    command = _lab_command("run", str(_single_scenario()), "--certs", certs)
    _wall(command)  # warms certs/ (and the OS file cache)
    samples = [_wall(command) for _ in range(res.repeat)]
    res.add("warm", "warm_run_s", "the same, warm certs/", "s", samples,
            Goal("<", 1.0, "< 1 s"))


def bench_help(res: BenchReport, certs: str) -> None:
    command = _lab_command("--help")
    _wall(command)
    samples = [_wall(command) for _ in range(res.repeat)]
    res.add("help", "help_s", "ibcm-lab --help", "s", samples, Goal("<", 0.3, "< 0.3 s"))


def bench_demo(res: BenchReport, certs: str) -> None:
    command = _lab_command("demo", "--certs", certs)
    _wall(command)
    samples = [_wall(command) for _ in range(res.repeat)]
    res.add("demo", "demo_s", "ibcm-lab demo, warm certs/", "s", samples)


# -- the matrix and its floor ---------------------------------------------------------------


@contextlib.contextmanager
def _counting_accepts() -> Iterator[Counter[int]]:
    """Count the connections every listening socket of this process accepts, by port.

    asyncio's servers accept with ``socket.socket.accept``; wrapping it counts every
    connection a lab server took, whatever the lab does with it afterwards.
    """
    counts: Counter[int] = Counter()
    original = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = original(self)
        counts[self.getsockname()[1]] += 1
        return conn, address

    socket.socket.accept = accept  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        socket.socket.accept = original  # type: ignore[method-assign]


@dataclass
class CellWork:
    """What the cells of a selection made the servers do (counted in one serial pass)."""

    cells: int
    handshakes: int
    """Connections to the MP's HTTPS site: each a mutual-TLS handshake."""
    crl_fetches: int
    """Connections to the CDP server: each one HTTP GET of a CRL (or CA certificate)."""
    plain_http: int
    """Connections to the MP's HTTP site (SMSMP without https://: 403.4)."""
    serial_s: float
    """Wall time of the pass: every row in one lab, one process, one core."""


def _floor_config() -> dict[str, str]:
    return {"cdp": "ldap+http-intranet", "site_crl": "on", "nocrlcheck": "no", "names": "both",
            "smsmp": "https", "ccmhostname": "given"}


async def _count_cell_work(selection: Selection, certs: str) -> CellWork:
    from lab.matrix.sweep import scenario_for
    from lab.pki.cache import PKICache
    from lab.run import run_scenario
    from lab.servers.harness import start_lab

    scenarios = [scenario_for(c, selection.situations) for c in selection.rows]
    cache = PKICache(certs)
    cells = sum(len(s.clients) for s in scenarios)
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-") as scratch, \
            _counting_accepts() as counts:
        async with start_lab(scratch=scratch) as lab:
            began = time.perf_counter()
            for scenario in scenarios:
                await run_scenario(lab, scenario, cache, Path(scratch))
            elapsed = time.perf_counter() - began
            ports = lab.ports
    return CellWork(cells, counts[ports.mp_https], counts[ports.cdp], counts[ports.mp_http],
                    elapsed)


@dataclass
class FloorCosts:
    handshake_ms: float
    crl_ms: float
    http_ms: float


async def floor_costs(certs: str, ops: int) -> FloorCosts:
    """The floor's unit costs, measured one after another in one lab (client and servers in
    this process, as in a matrix worker):

    * a bare mutual-TLS handshake with the MP: a new connection, the lab's roots and name
      check, a client certificate presented, then closed (no HTTP request);
    * a bare GET of a CRL from the CDP server over a new connection, read to the end;
    * a bare GET to the MP's HTTP site (answered 403.4).
    """
    from lab.matrix.sweep import scenario_for
    from lab.pki.cache import PKICache
    from lab.run import stage_scenario
    from lab.servers.harness import start_lab

    scenario = scenario_for(_floor_config(), ("intranet",))
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-") as scratch:
        async with start_lab(scratch=scratch) as lab:
            deployment = await stage_scenario(lab, scenario, PKICache(certs))
            pki = deployment.pki
            client = next(iter(pki.clients.values()))
            tls = ssl.create_default_context(cadata=pki.trust_pem().decode())
            tls.load_cert_chain(client.chain_path, client.key_path)
            (host_port, path), _pub = next(
                (k, p) for k, p in deployment.http_publications.items() if p.kind == "crl")
            crl_request = get_request(path, host_port.rsplit(":", 1)[0])
            http_request = get_request(MPLIST, INTRA)

            async def handshake() -> None:
                async with asyncio.timeout(30):
                    _reader, writer = await asyncio.open_connection(
                        LOOPBACK, lab.ports.mp_https, ssl=tls, server_hostname=INTERNET)
                await close_writer(writer)

            async def crl() -> None:
                status, body = await exchange(lab.ports.cdp, crl_request)
                if status != 200 or not body:
                    raise BenchError(f"the CDP server answered {status} to the floor's GET")

            async def http() -> None:
                await exchange(lab.ports.mp_http, http_request)

            async def timed(op: Callable[[], Any]) -> float:
                for _ in range(max(3, ops // 10)):
                    await op()
                began = time.perf_counter()
                for _ in range(ops):
                    await op()
                for _ in range(5):
                    await asyncio.sleep(0)
                return (time.perf_counter() - began) * 1000 / ops

            return FloorCosts(await timed(handshake), await timed(crl), await timed(http))


def bench_matrix(res: BenchReport, certs: str, sizes: Sizes) -> None:
    from lab.matrix.sweep import make_selection, run_matrix

    selections = [make_selection(choice) for choice in sizes.matrix]
    full = selections[-1]
    # Untimed: every (CDP layout, MP names) PKI in the cache, the pool's imports warm.
    run_matrix(make_selection({"site_crl": ["on"], "nocrlcheck": ["yes"], "smsmp": ["https"],
                               "ccmhostname": ["given"]}, ["intranet"]), certs=certs)
    work = asyncio.run(_count_cell_work(full, certs))
    walls: dict[int, list[float]] = {}
    cells_per_s: list[float] = []
    cell_ms: list[float] = []
    floor_ms: list[float] = []
    ratios: list[float] = []
    units: list[FloorCosts] = []
    jobs = 1
    for _ in range(res.repeat):
        for selection in selections:
            result = run_matrix(selection, certs=certs)
            walls.setdefault(result.cells, []).append(result.wall_ms / 1000)
            if selection is full:
                jobs = result.jobs
                cells_per_s.append(result.cells_per_second)
                cell_ms.append(result.wall_ms * result.jobs / result.cells)
        unit = asyncio.run(floor_costs(certs, sizes.floor_ops))
        units.append(unit)
        floor = (work.handshakes * unit.handshake_ms + work.crl_fetches * unit.crl_ms
                 + work.plain_http * unit.http_ms) / work.cells
        floor_ms.append(floor)
        ratios.append(cell_ms[-1] / floor)
    counts = sorted(walls)
    for n in counts:
        goal = Goal("<", 15.0, "< 15 s") if n == counts[-1] else None
        res.add("matrix", f"matrix_{n}_cells_s", f"matrix, {n} cells", "s", walls[n], goal,
                note=f"{jobs} workers" if n == counts[-1] else "")
    res.add("matrix", "matrix_cells_per_s", f"matrix cells per second ({counts[-1]} cells)",
            "cells/s", cells_per_s)
    if len(counts) > 1:
        small, big = counts[0], counts[-1]
        growth = [(b / s) / (big / small)
                  for s, b in zip(walls[small], walls[big], strict=True)]
        res.add("matrix", "matrix_growth", f"matrix time growth {small} -> {big} cells "
                "(1 = linear)", "x", growth, Goal("<", 1.2, "< 1.2 (linear)"))
    res.add("matrix", "cell_core_ms", "cell cost: wall x workers / cells", "ms", cell_ms)
    res.add("matrix", "floor_ms", "floor: the cell's bare handshakes + CRL GETs", "ms", floor_ms,
            note=f"per cell {work.handshakes / work.cells:.2f} handshakes, "
                 f"{work.crl_fetches / work.cells:.2f} CRL GETs, "
                 f"{work.plain_http / work.cells:.2f} plain GETs")
    res.add("matrix", "cell_vs_floor", "cell cost / floor", "x", ratios,
            Goal("<", 2.0001, "<= 2x"))
    serial_cell = work.serial_s * 1000 / work.cells
    res.add("matrix", "cell_serial_ms", "cell cost, one lab in one process (no pool)", "ms",
            [serial_cell], note="one pass, counting the work")
    res.add("matrix", "cell_serial_vs_floor", "  its cost / floor", "x",
            [serial_cell / f for f in floor_ms])
    res.add("matrix", "floor_handshake_ms", "bare mutual-TLS handshake (RSA-2048)", "ms",
            [u.handshake_ms for u in units])
    res.add("matrix", "floor_crl_ms", "bare CRL GET", "ms", [u.crl_ms for u in units])
    res.add("matrix", "floor_http_ms", "bare plain GET (403.4)", "ms", [u.http_ms for u in units])
