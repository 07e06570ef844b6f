"""``ibcm-lab bench``: how fast the lab is, as one table (and JSON).

Every figure is measured ``--repeat`` times (default 3) and shown as its median, min and max,
next to its goal (issue 7) and whether the median meets it. Measurements (``--only`` names):

``cold``, ``warm``, ``help``, ``demo``
    Wall time of a new interpreter (``python -m lab ...``, interpreter start included):
    ``run`` of one bundled scenario with an empty certificate folder (keys generated), the
    same with a warm one, ``--help``, and ``demo`` with a warm folder.
``matrix``
    :func:`lab.matrix.run_matrix` in this process with the default selection (960 cells, one
    worker per core) and with a half and a quarter of it (matrix time against cell count),
    then the *floor*: what one cell's real network work costs on its own, measured in the
    same run (see :func:`_floor_costs`).
``handshake``
    Mutual-TLS handshakes per second on the mock MP (its own process, one core) with an
    RSA-2048 and an ECDSA P-256 certificate, side by side with nginx (one worker) serving the
    same certificate with ``ssl_verify_client on``, driven by the same load generator,
    interleaved; skipped with a message when nginx is not installed.
``fleet``
    N clients, each with its own client certificate, registering and sending inventory
    against one mock MP (its own process): wall time, requests/s, errors, peak RSS and the
    rate of CRL fetches the CDP server answered (IIS checks every new client certificate
    against its CRL).

``--quick`` uses tiny sizes: it proves every measurement works, it does not judge goals.
Benchmarks never run as timed tests; the test suite runs ``--quick`` once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from lab.errors import LabError, UsageError

GROUPS = ("cold", "warm", "help", "demo", "matrix", "handshake", "fleet")
INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
LOOPBACK = "127.0.0.1"
SINGLE_SCENARIO = "seed4-internet-client-ldap-cdp-crl-on.toml"
MIB = 1024 * 1024
NO_CHECK_TIME = ssl.VerifyFlags(0x200000)
"""X509_V_FLAG_NO_CHECK_TIME, as the lab's MP context sets it (IIS judges dates itself)."""


T = TypeVar("T")


class BenchError(LabError):
    """A measurement could not be made (a subprocess failed, a server did not start)."""


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    op: str
    """``<`` (the figure must stay below ``value``) or ``>=``."""
    value: float
    text: str

    def met(self, figure: float) -> bool:
        return figure < self.value if self.op == "<" else figure >= self.value

    def miss(self, figure: float) -> str:
        """By how much ``figure`` misses the goal, in words."""
        if self.op == "<":
            if self.value == 0:
                return f"{figure:g} instead of none"
            return f"{figure / self.value:.2f}x the limit"
        return f"{figure / self.value:.0%} of the goal" if self.value else "below the goal"


@dataclass
class Figure:
    group: str
    key: str
    label: str
    unit: str
    samples: list[float]
    goal: Goal | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")


@dataclass(frozen=True)
class Sizes:
    matrix: tuple[dict[str, list[str]], ...]
    """Matrix selections (dimension choices), smallest first; the last is the full one."""
    floor_ops: int
    """Bare operations timed per kind for the floor."""
    handshake_seconds: float
    handshake_concurrency: int
    fleet: tuple[int, ...]
    fleet_concurrency: int


FULL = Sizes(
    matrix=({"site_crl": ["on"], "ccmhostname": ["given"]}, {"site_crl": ["on"]}, {}),
    floor_ops=300, handshake_seconds=3.0, handshake_concurrency=50,
    fleet=(1_000, 5_000, 25_000), fleet_concurrency=200)
QUICK_BASE = {"cdp": ["ldap", "http-internet"], "names": ["both"], "smsmp": ["https"],
              "nocrlcheck": ["no"]}
QUICK = Sizes(
    matrix=({**QUICK_BASE, "site_crl": ["on"], "ccmhostname": ["given"]},
            {**QUICK_BASE, "site_crl": ["on"]}, dict(QUICK_BASE)),
    floor_ops=20, handshake_seconds=0.5, handshake_concurrency=10,
    fleet=(50, 100), fleet_concurrency=20)


@dataclass
class BenchResult:
    quick: bool
    repeat: int
    figures: list[Figure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(measurement, why)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(measurement, what went wrong): a measurement that could not be made."""
    notes: list[str] = field(default_factory=list)
    speedup: list[float] = field(default_factory=list)
    """:func:`parallel_speedup` before and after the measurements."""
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    wall_s: float = 0.0

    def add(self, group: str, key: str, label: str, unit: str, samples: Sequence[float],
            goal: Goal | None = None, note: str = "") -> Figure:
        fig = Figure(group, key, label, unit, [float(s) for s in samples], goal, note)
        self.figures.append(fig)
        return fig

    def met(self, fig: Figure) -> bool | None:
        """Whether ``fig`` meets its goal; None without a goal, or in --quick runs (the
        goals are for the full sizes)."""
        if fig.goal is None or self.quick or not fig.samples:
            return None
        return fig.goal.met(fig.median)


# -- machine --------------------------------------------------------------------------------


def _spin(seconds: float) -> float:
    """CPU work for about ``seconds`` of one core; returns the wall time it took."""
    began = time.perf_counter()
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(1000))
    return time.perf_counter() - began


def parallel_speedup(seconds: float = 0.5) -> float:
    """How many cores' worth of CPU work two busy processes get done at once (2.0 on two
    free cores; about 1.0 where the cores are shared, as on an oversubscribed VM or with
    another job running). Measured, because the matrix and the servers assume it."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_spin, [0.05, 0.05]))  # the workers are up
        began = time.perf_counter()
        list(pool.map(_spin, [seconds, seconds]))
        wall = time.perf_counter() - began
    return round(2 * seconds / wall, 2)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nginx() -> str | None:
    found = shutil.which("nginx")
    if found is None:
        for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx",
                          "/usr/local/nginx/sbin/nginx"):
            if os.access(candidate, os.X_OK):
                return candidate
    return found


def _nginx_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ") or None


def event_loop() -> str:
    """The event loop the MP process and the load generator run on: uvloop when installed
    (``pip install -e ".[bench]"``), else asyncio's own. The lab's ``run`` always uses
    asyncio's."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    from importlib.metadata import version

    return f"uvloop {version('uvloop')}"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on :func:`event_loop`'s loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def machine_info() -> dict[str, Any]:
    import aiohttp
    import cryptography

    return {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(), "aiohttp": aiohttp.__version__,
        "cryptography": cryptography.__version__, "nginx": _nginx_version(_nginx()),
        "event_loop": event_loop(),
    }


def rss_mib(pid: int | str = "self") -> float:
    """The resident set size of process ``pid`` now, in MiB (Linux: /proc/<pid>/statm)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib(pid: int | str = "self") -> float:
    """The peak resident set size of process ``pid`` (VmHWM), in MiB; NaN where unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: ``5`` to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (from /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


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


def bench_cold(res: BenchResult, certs: str) -> None:
    samples = []
    for _ in range(res.repeat):
        with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-cold-") as empty:
            samples.append(_wall(_lab_command("run", str(_single_scenario()), "--certs", empty)))
    res.add("cold", "cold_run_s", f"run {SINGLE_SCENARIO.removesuffix('.toml')}, empty certs/",
            "s", samples, note="interpreter start, key generation, servers, 7 steps")


def bench_warm(res: BenchResult, certs: str) -> None:
    command = _lab_command("run", str(_single_scenario()), "--certs", certs)
    _wall(command)  # warms certs/ (and the OS file cache)
    samples = [_wall(command) for _ in range(res.repeat)]
    res.add("warm", "warm_run_s", "the same, warm certs/", "s", samples,
            Goal("<", 1.0, "< 1 s"))


def bench_help(res: BenchResult, certs: str) -> None:
    command = _lab_command("--help")
    _wall(command)
    samples = [_wall(command) for _ in range(res.repeat)]
    res.add("help", "help_s", "ibcm-lab --help", "s", samples, Goal("<", 0.3, "< 0.3 s"))


def bench_demo(res: BenchResult, certs: str) -> None:
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


async def _count_cell_work(selection: Any, certs: str) -> CellWork:
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


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length is not None else await reader.read()
    return status, body


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        await writer.wait_closed()


class ResumingContext(ssl.SSLContext):
    """A client context that offers the TLS session of its previous connection, as SChannel's
    client session cache does for a client's next connection to the same server (asyncio
    has no ``session`` argument: it goes in through :meth:`wrap_bio`)."""

    session: ssl.SSLSession | None = None
    resumed: int = 0

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session or self.session)


async def _exchange(port: int, request: bytes, *, tls: ssl.SSLContext | None = None,
                    server_hostname: str | None = None, timeout: float = 60.0,
                    versions: Counter[str] | None = None) -> tuple[int, bytes]:
    """One request on a new connection (``Connection: close``): status and body; counts the
    TLS version negotiated in ``versions``."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            LOOPBACK, port, ssl=tls, server_hostname=server_hostname if tls else None)
        try:
            writer.write(request)
            answer = await _read_response(reader)
            tls_object = writer.get_extra_info("ssl_object") if tls is not None else None
            if tls_object is not None:
                if versions is not None:
                    versions[tls_object.version() or "?"] += 1
                if isinstance(tls, ResumingContext):
                    tls.resumed += bool(tls_object.session_reused)
                    if tls.session is None:
                        # Once per client: in CPython 3.11 every read of
                        # SSLObject.session leaks a few kB (seen here: 6 kB a read).
                        tls.session = tls_object.session
            return answer
        finally:
            await _close(writer)


def _get(path: str, host: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ibcm-lab-bench\r\n"
            "Connection: close\r\n\r\n").encode()


def _post(body: bytes, host: str = INTERNET) -> bytes:
    return (f"CCM_POST /ccm_system/request HTTP/1.1\r\nHost: {host}\r\n"
            f"User-Agent: ccmhttp\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


@dataclass
class FloorCosts:
    handshake_ms: float
    crl_ms: float
    http_ms: float


async def _floor_costs(certs: str, ops: int) -> FloorCosts:
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
            crl_request = _get(path, host_port.rsplit(":", 1)[0])
            http_request = _get("/SMS_MP/.sms_aut?MPLIST", INTRA)

            async def handshake() -> None:
                async with asyncio.timeout(30):
                    _reader, writer = await asyncio.open_connection(
                        LOOPBACK, lab.ports.mp_https, ssl=tls, server_hostname=INTERNET)
                await _close(writer)

            async def crl() -> None:
                status, body = await _exchange(lab.ports.cdp, crl_request)
                if status != 200 or not body:
                    raise BenchError(f"the CDP server answered {status} to the floor's GET")

            async def http() -> None:
                await _exchange(lab.ports.mp_http, http_request)

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


def bench_matrix(res: BenchResult, certs: str, sizes: Sizes) -> None:
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
        unit = asyncio.run(_floor_costs(certs, sizes.floor_ops))
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


# -- the MP in its own process --------------------------------------------------------------


def bench_scenario_text(clients: Sequence[str] = ("BENCH01",), *, http_cdp_only: bool = True,
                        title: str = "bench: clients registering and sending inventory") -> str:
    """The MP of the handshake and fleet measurements: both names, one client certificate per
    name in ``clients``, each client registering from the internet. Contoso-CA writes only an
    HTTP CDP (so IIS fetches each client certificate's CRL from the CDP server), or with
    ``http_cdp_only=False`` its default CDPs."""
    ccmsetup = (f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA} "
                f"CCMHOSTNAME={INTERNET}")
    cdp = 'cdp = ["http"]\n' if http_cdp_only else ""
    client_tables = "".join(f"""
[[client]]
name = "{name}"
ccmsetup = "{ccmsetup}"

[[client.step]]
action = "register"
location = "internet"
""" for name in clients)
    return f"""
[scenario]
title = "{title}"

[site]
code = "P01"
check_crl = true

[[ca]]
name = "Contoso-CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
{cdp}
[mp]
intranet_fqdn = "{INTRA}"
internet_fqdn = "{INTERNET}"

[mp.cert]
issuer = "Contoso-CA"
san = ["{INTRA}", "{INTERNET}"]
{client_tables}"""


def registration_message(client_id: str, host: str) -> bytes:
    """A client's ``MP_ClientRegistration`` message (lab-shaped XML)."""
    return (f"<Msg><TargetEndpoint>MP_ClientRegistration</TargetEndpoint>"
            f"<ClientID>{client_id}</ClientID><SourceHost>{host}</SourceHost></Msg>").encode()


def client_contexts(pki: Any) -> list[ssl.SSLContext]:
    """One TLS context per client certificate of ``pki`` (a BuiltPKI): the lab's roots, the
    MP's name checked, the client's certificate presented."""
    contexts = []
    for issued in pki.clients.values():
        ctx = ssl.create_default_context(cadata=pki.trust_pem().decode())
        ctx.load_cert_chain(issued.chain_path, issued.key_path)
        contexts.append(ctx)
    return contexts


def _build_bench_pki(certs: str) -> Any:
    from lab.clock import Clock
    from lab.pki.build import build_pki
    from lab.pki.cache import PKICache
    from lab.scenario.loader import load_scenario_text

    scenario = load_scenario_text(bench_scenario_text(), name="bench-mp")
    return build_pki(scenario, Clock(), PKICache(certs))


def _ecdsa_leaf(ca: Any, *, cn: str, san: Sequence[str], server: bool,
                now: dt.datetime) -> tuple[bytes, bytes]:
    """An ECDSA P-256 certificate issued by the lab CA ``ca`` (a BuiltCA): (key PEM, cert
    PEM). The lab's PKI makes RSA-2048 keys; the benchmark issues these itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
    )
    if ca.cdp_urls:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(u) for u in ca.cdp_urls],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    # SEC1 ("EC PRIVATE KEY"), not PKCS#8: OpenSSL 3.0 loads it about twice as fast, which
    # matters when 25,000 simulated clients each load their own key.
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _count_retrievals(retriever: Any) -> list[int]:
    """Count the HTTP GETs IIS's retriever makes to the CDP server (cache hits are not
    retrievals); a counter on the MP side works on any event loop."""
    count = [0]
    fetch = retriever._fetch

    async def counting(url: str) -> Any:
        got = await fetch(url)
        if got.http_status is not None:
            count[0] += 1
        return got

    retriever._fetch = counting
    return count


class _BareTls(asyncio.Protocol):
    """The floor of a Python TLS server: the MP's own TLS context on the same event loop,
    but no HTTP stack and no IIS: whatever arrives up to a blank line is answered with a
    fixed 200 and the connection closed."""

    ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 9\r\n"
              b"Connection: close\r\n\r\n<MPList/>")

    def __init__(self) -> None:
        self.seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.seen += data
        if b"\r\n\r\n" in self.seen or len(self.seen) > 65536:
            self.transport.write(self.ANSWER)
            self.transport.close()


async def _serve_mp(spec: dict[str, Any]) -> int:
    """The child process: the lab's servers with the bench scenario staged, driven over
    stdin (``rsa`` / ``ecdsa``: which MP certificate SNI hands out; ``stats``; ``quit``).
    With an ECDSA certificate it also serves :class:`_BareTls` on one port per certificate
    (the handshake measurement's Python floor)."""
    from lab.pki.cache import PKICache
    from lab.run import stage_scenario
    from lab.scenario.loader import load_scenario_text
    from lab.servers.harness import server_session_cache, start_lab

    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-mp-") as scratch:
        scenario = load_scenario_text(bench_scenario_text(), name="bench-mp")
        async with start_lab(scratch=scratch) as lab:
            deployment = await stage_scenario(lab, scenario, PKICache(spec["certs"]))
            crl_gets = _count_retrievals(lab.mp_state.retriever)
            names = list(lab.mp_state.contexts)
            contexts = {"rsa": dict(lab.mp_state.contexts)}
            if spec.get("ecdsa_chain"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(spec["ecdsa_chain"], spec["ecdsa_key"])
                ctx.verify_mode = ssl.CERT_OPTIONAL
                ctx.verify_flags |= NO_CHECK_TIME
                server_session_cache(ctx)
                ctx.load_verify_locations(cadata=b"".join(
                    ca.cert_pem for ca in deployment.pki.cas.values()).decode())
                contexts["ecdsa"] = dict.fromkeys(names, ctx)
            bare: dict[str, int] = {}
            if spec.get("ecdsa_chain"):
                loop = asyncio.get_running_loop()
                for kind, by_name in contexts.items():
                    server = await loop.create_server(_BareTls, LOOPBACK, 0, backlog=1024,
                                                      ssl=by_name[INTERNET.lower()])
                    bare[kind] = server.sockets[0].getsockname()[1]
            _say({"ready": True, "pid": os.getpid(), "mp_https": lab.ports.mp_https,
                  "mp_http": lab.ports.mp_http, "cdp": lab.ports.cdp, "bare": bare})
            while True:
                line = (await asyncio.to_thread(sys.stdin.readline)).strip()
                if not line or line == "quit":
                    break
                if line in contexts:
                    lab.bind_mp_contexts(contexts[line])
                    _say({"ok": True})
                elif line == "stats":
                    statuses = Counter(f"{r.status}.{r.substatus}" if r.substatus
                                       else str(r.status) for r in lab.mp_state.records)
                    times = os.times()
                    _say({"crl_gets": crl_gets[0],
                          "statuses": dict(statuses), "peak_rss_mib": peak_rss_mib(),
                          "cpu_s": times.user + times.system,
                          "cert_verdicts": len(lab.mp_state.cert_cache)})
                else:
                    _say({"error": f"unknown command {line!r}"})
    return 0


class MpProcess:
    """The mock MP (with its CDP server) in a process of its own.

    It runs as ``python -m lab.tools.bench.bench``.
    """

    def __init__(self, certs: str, *, ecdsa: tuple[Path, Path] | None = None) -> None:
        spec: dict[str, Any] = {"certs": certs}
        if ecdsa is not None:
            spec["ecdsa_chain"], spec["ecdsa_key"] = str(ecdsa[0]), str(ecdsa[1])
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.tools.bench.bench", "_serve", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        try:
            hello = self._read(60)
        except BaseException:
            self.close()
            raise
        self.pid = int(hello["pid"])
        self.mp_https = int(hello["mp_https"])
        self.cdp = int(hello["cdp"])
        self.bare: dict[str, int] = hello.get("bare", {})

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise BenchError(f"the MP process did not answer in {timeout:g} s"
                                 f"{self._errors()}")
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the MP process ended (exit {self.proc.wait()}){self._errors()}")
        message: dict[str, Any] = json.loads(line)
        return message

    def _errors(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f": {text.splitlines()[-1]}" if text else ""

    def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if "error" in answer:
            raise BenchError(f"the MP process: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> MpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- nginx ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


NGINX_SESSIONS = {
    # As the MP keeps them: a server-side session cache, no stateless tickets.
    "cache": "ssl_session_cache shared:SSL:10m;\n        ssl_session_tickets off;",
    # nginx as installed: no cache, stateless TLS 1.3 tickets (OpenSSL's two per handshake).
    "defaults": "",
}


class Nginx:
    """nginx (one worker) serving the MP's certificates with ``ssl_verify_client on``: one
    port per certificate and session set-up (:data:`NGINX_SESSIONS`), ``return 200`` for
    every request. ``ports[(certificate, sessions)]``."""

    def __init__(self, binary: str, folder: Path, client_ca: Path,
                 certs: dict[str, tuple[Path, Path]]) -> None:
        self.folder = folder
        self.ports = {(name, sessions): _free_port() for name in certs
                      for sessions in NGINX_SESSIONS}
        without = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            without = subprocess.run([binary, "-V"], capture_output=True, text=True,
                                     timeout=10).stderr
        temp_paths = "".join(
            f"    {module}_temp_path {folder}/{module};\n"
            for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            if f"--without-http_{module}_module" not in without)
        servers = "".join(f"""
    server {{
        listen {LOOPBACK}:{self.ports[(name, sessions)]} ssl backlog=1024;
        server_name {INTERNET} {INTRA};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_client_certificate {client_ca};
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        {session_lines}
        location / {{
            default_type text/xml;
            return 200 "<MPList/>";
        }}
    }}
""" for name, (chain, key) in certs.items()
            for sessions, session_lines in NGINX_SESSIONS.items())
        conf = folder / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {folder}/access.log;
{temp_paths}    keepalive_timeout 0;
{servers}}}
""")
        self.proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(conf), "-e",
                                      str(folder / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode().strip()
                raise BenchError(f"nginx did not start: {err}")
            try:
                for port in self.ports.values():
                    socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.close()
            raise BenchError("nginx did not listen within 15 s")
        workers = []
        for _ in range(100):
            workers = _children_of(self.proc.pid)
            if workers:
                break
            time.sleep(0.05)
        self.worker = workers[0] if workers else self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


# -- the load generator ---------------------------------------------------------------------


@dataclass
class Load:
    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """This process's CPU time during the run (the generator's cost)."""
    resumed: int = 0
    """Connections that resumed a TLS session."""
    versions: Counter[str] = field(default_factory=Counter)
    """TLS versions negotiated, per connection."""

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 3:
            self.first_errors.append(f"{kind}: {detail}"[:300])


async def drive_handshakes(port: int, tls: ssl.SSLContext, *, seconds: float,
                           concurrency: int) -> Load:
    """``concurrency`` workers, each a loop of: a new connection, a full mutual-TLS handshake
    (no session resumption), ``GET /SMS_MP/.sms_aut?MPLIST``, the answer, close. The server
    has judged the client certificate once it answers."""
    request = _get("/SMS_MP/.sms_aut?MPLIST", INTERNET)
    load = Load()
    began = time.perf_counter()
    cpu = time.process_time()
    stop = began + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            try:
                status, body = await _exchange(port, request, tls=tls,
                                               server_hostname=INTERNET, timeout=30,
                                               versions=load.versions)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError,
                    ValueError) as e:
                load.fail(type(e).__name__, str(e))
                continue
            if status != 200:
                load.fail(f"HTTP {status}", body[:200].decode("latin-1"))
                continue
            load.done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.wall_s = time.perf_counter() - began
    load.cpu_s = time.process_time() - cpu
    return load


def _versions(seen: Counter[str]) -> str:
    """``TLSv1.3`` or, where connections differed, ``TLSv1.3 x 90, TLSv1.2 x 10``."""
    if len(seen) == 1:
        return next(iter(seen))
    return ", ".join(f"{v} x {n:,}" for v, n in seen.most_common()) or "no TLS version seen"


def bench_handshake(res: BenchResult, certs: str, sizes: Sizes) -> None:
    from cryptography.hazmat.primitives import serialization

    pki = _build_bench_pki(certs)
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    binary = _nginx()
    now = dt.datetime.now(dt.UTC)
    kinds = ("rsa", "ecdsa")
    titles = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-hs-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # nginx's worker (another user) writes its logs here
        key_pem, cert_pem = _ecdsa_leaf(ca, cn=INTRA, san=(INTRA, INTERNET), server=True,
                                        now=now)
        ecdsa_key = _write_private(folder / "mp-ecdsa.key", key_pem)
        ecdsa_chain = folder / "mp-ecdsa.pem"
        ecdsa_chain.write_bytes(cert_pem)
        ckey, ccert = _ecdsa_leaf(ca, cn="BENCH02.contoso.local",
                                  san=("BENCH02.contoso.local",), server=False, now=now)
        client_ecdsa = _write_private(folder / "client-ecdsa.pem", ckey + ccert)
        client_ca = folder / "client-ca.pem"
        client_ca.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        trust = pki.trust_pem().decode()
        client = pki.clients["BENCH01"]
        tls: dict[str, ssl.SSLContext] = {}
        for kind in kinds:
            ctx = ssl.create_default_context(cadata=trust)
            if kind == "rsa":
                ctx.load_cert_chain(client.chain_path, client.key_path)
            else:
                ctx.load_cert_chain(client_ecdsa)
            tls[kind] = ctx
        server_certs = {"rsa": (pki.mp.chain_path, pki.mp.key_path),
                        "ecdsa": (ecdsa_chain, ecdsa_key)}
        nginx: Nginx | None = None
        if binary is None:
            res.skipped.append(("handshake", "nginx comparison skipped: nginx is not "
                                "installed (apt-get install nginx-light)"))
        rates: dict[tuple[str, str], list[float]] = {}
        cpu_ms: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {k: [] for k in kinds}
        as_installed: dict[str, list[float]] = {k: [] for k in kinds}
        generator: list[float] = []
        errors: Counter[str] = Counter()
        first_errors: list[str] = []
        versions: dict[str, Counter[str]] = {"mp": Counter(), "bare": Counter(),
                                             "nginx": Counter(), "nginx_defaults": Counter()}
        with MpProcess(certs, ecdsa=(ecdsa_chain, ecdsa_key)) as mp:
            try:
                if binary is not None:
                    nginx = Nginx(binary, folder, client_ca, server_certs)
                servers: list[tuple[str, int, Callable[[str], int], Callable[[str], None]]] = []

                def mp_port(_kind: str) -> int:
                    return mp.mp_https

                def mp_select(kind: str) -> None:
                    mp.ask(kind)  # which certificate SNI hands out from now on

                def nothing_to_select(_kind: str) -> None:
                    pass

                def nginx_port(sessions: str) -> Callable[[str], int]:
                    assert nginx is not None
                    return lambda kind: nginx.ports[(kind, sessions)]

                servers.append(("mp", mp.pid, mp_port, mp_select))
                servers.append(("bare", mp.pid, mp.bare.__getitem__, nothing_to_select))
                if nginx is not None:
                    for sessions, name in (("cache", "nginx"), ("defaults", "nginx_defaults")):
                        servers.append((name, nginx.worker, nginx_port(sessions),
                                        nothing_to_select))

                async def run_all() -> None:
                    for kind in kinds:  # warm-up, untimed
                        for _name, _pid, port, select in servers:
                            select(kind)
                            await drive_handshakes(port(kind), tls[kind], seconds=0.3,
                                                   concurrency=sizes.handshake_concurrency)
                    for r in range(res.repeat):
                        for kind in kinds:
                            order = servers if r % 2 == 0 else list(reversed(servers))
                            got: dict[str, float] = {}
                            for name, pid, port, select in order:
                                select(kind)
                                cpu_before = _cpu_seconds(pid)
                                load = await drive_handshakes(
                                    port(kind), tls[kind], seconds=sizes.handshake_seconds,
                                    concurrency=sizes.handshake_concurrency)
                                cpu_used = _cpu_seconds(pid) - cpu_before
                                rate = load.done / load.wall_s
                                got[name] = rate
                                rates.setdefault((name, kind), []).append(rate)
                                cpu_ms.setdefault((name, kind), []).append(
                                    cpu_used * 1000 / max(1, load.done))
                                generator.append(load.cpu_s / load.wall_s)
                                errors.update({f"{name}: {k}": v for k, v in load.errors.items()})
                                first_errors.extend(load.first_errors[:1])
                                versions[name].update(load.versions)
                            if "nginx" in got:
                                ratios[kind].append(got["mp"] / got["nginx"])
                                as_installed[kind].append(got["mp"] / got["nginx_defaults"])

                run_loop(run_all())
            finally:
                if nginx is not None:
                    nginx.close()
    for kind in kinds:
        t = titles[kind]
        res.add("handshake", f"mp_hs_{kind}", f"MP mutual-TLS handshakes/s, {t}", "/s",
                rates[("mp", kind)], note=f"MP process, 1 core; {_versions(versions['mp'])}")
        if nginx is not None:
            res.add("handshake", f"nginx_hs_{kind}", f"nginx, same certificate, {t}", "/s",
                    rates[("nginx", kind)], note=f"1 worker; {_versions(versions['nginx'])}; "
                    "a session cache, as the MP")
            res.add("handshake", f"mp_vs_nginx_{kind}", f"MP / nginx, {t}", "x", ratios[kind],
                    Goal(">=", 0.75, ">= 0.75x"))
            res.add("handshake", f"nginx_defaults_hs_{kind}",
                    f"nginx as installed, same certificate, {t}", "/s",
                    rates[("nginx_defaults", kind)],
                    note=f"{_versions(versions['nginx_defaults'])}; 2 stateless tickets")
            res.add("handshake", f"mp_vs_nginx_defaults_{kind}",
                    f"MP / nginx as installed, {t}", "x", as_installed[kind])
        res.add("handshake", f"mp_cpu_ms_{kind}", f"MP CPU per handshake, {t}", "ms",
                cpu_ms[("mp", kind)])
        res.add("handshake", f"bare_hs_{kind}", f"bare Python TLS server, {t}", "/s",
                rates[("bare", kind)], note="the MP's TLS context and event loop, no HTTP")
        res.add("handshake", f"bare_cpu_ms_{kind}", f"bare Python TLS CPU per handshake, {t}",
                "ms", cpu_ms[("bare", kind)])
        if nginx is not None:
            res.add("handshake", f"nginx_cpu_ms_{kind}", f"nginx CPU per handshake, {t}", "ms",
                    cpu_ms[("nginx", kind)])
            res.add("handshake", f"bare_vs_nginx_cpu_{kind}",
                    f"bare Python TLS / nginx by CPU per handshake, {t}", "x",
                    [n / b for b, n in zip(cpu_ms[("bare", kind)], cpu_ms[("nginx", kind)],
                                           strict=True)],
                    note="the ceiling for a Python server on this stack")
            res.add("handshake", f"mp_vs_nginx_cpu_{kind}",
                    f"MP / nginx by server CPU per handshake, {t}", "x",
                    [n / m for m, n in zip(cpu_ms[("mp", kind)], cpu_ms[("nginx", kind)],
                                           strict=True)],
                    Goal(">=", 0.75, ">= 0.75x"),
                    note="independent of the generator's speed")
    busy = res.add("handshake", "generator_cpu", "load generator CPU use (1 = one core busy)",
                   "x", generator)
    if nginx is not None and busy.median > 0.85:
        busy.note = ("the generator kept its core busy: nginx's rate is a lower bound, the "
                     "CPU ratio is the fairer comparison")
    res.add("handshake", "handshake_errors", "handshake errors", "", [sum(errors.values())],
            Goal("<", 0.5, "none"), note="; ".join(first_errors[:2]))


# -- fleet ----------------------------------------------------------------------------------


def _issue_fleet(ca: Any, folder: Path, count: int, now: dt.datetime) -> list[Path]:
    """``count`` client certificates, one per simulated client, each with its own ECDSA P-256
    key, issued by ``ca`` with its CDP: one PEM file (key + certificate) each."""
    paths = []
    for i in range(count):
        name = f"FLEET{i:05d}.contoso.local"
        key, cert = _ecdsa_leaf(ca, cn=name, san=(name,), server=False, now=now)
        paths.append(_write_private(folder / f"{i:05d}.pem", key + cert))
    return paths


async def drive_fleet(port: int, trust: str, files: Sequence[Path], *, concurrency: int,
                      timeout: float = 120.0) -> Load:
    """Every client (at most ``concurrency`` at once) loads its own certificate and key,
    registers (``MP_ClientRegistration``) and sends inventory (``MP_HinvEndpoint``), each
    over a new mutual-TLS connection; each answer is checked.

    Each of the ``concurrency`` workers keeps one TLS context with the lab's roots and loads
    the next client's certificate and key into it (OpenSSL copies them into each connection
    as it is made), so a client costs the generator a key load, not a new context: the MP
    sees the same handshakes either way."""
    load = Load()
    next_client = 0
    began = time.perf_counter()
    cpu = time.process_time()

    async def one(i: int, tls: ResumingContext) -> None:
        tls.load_cert_chain(files[i])
        tls.session = None  # a new client: nothing to resume until it has connected once
        tls.resumed = 0
        host = f"FLEET{i:05d}"
        client_id = f"GUID:{str(uuid.uuid4()).upper()}"
        register = registration_message(client_id, host)
        inventory = (f"<Msg SchemaVersion=\"1.1\"><TargetEndpoint>MP_HinvEndpoint"
                     f"</TargetEndpoint><SourceID>{client_id}</SourceID>"
                     f"<SourceHost>{host}</SourceHost></Msg>").encode()
        for kind, body in (("registration", register), ("inventory", inventory)):
            try:
                status, reply = await _exchange(port, _post(body), tls=tls,
                                                server_hostname=INTERNET, timeout=timeout,
                                                versions=load.versions)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError,
                    ValueError) as e:
                load.fail(f"{kind}: {type(e).__name__}", str(e))
                return
            if status != 200:
                load.fail(f"{kind}: HTTP {status}", reply[:200].decode("latin-1"))
                return
            try:
                root = ET.fromstring(reply)
            except ET.ParseError as e:
                load.fail(f"{kind}: bad XML", str(e))
                return
            good = (root.tag == "ClientRegistrationReply"
                    and root.get("ClientID") == client_id and root.get("ApprovalStatus") == "1"
                    ) if kind == "registration" else (
                root.tag == "InventoryReply" and root.get("Accepted") == "1")
            if not good:
                load.fail(f"{kind}: wrong reply", reply[:200].decode("latin-1"))
                return
            load.done += 1
        load.resumed += tls.resumed

    async def worker() -> None:
        nonlocal next_client
        tls = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_verify_locations(cadata=trust)
        while next_client < len(files):
            i = next_client
            next_client += 1
            await one(i, tls)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(files)))))
    load.wall_s = time.perf_counter() - began
    load.cpu_s = time.process_time() - cpu
    return load


def _gets(count: float, clients: int) -> str:
    return f"{count:,.0f} GET{'' if count == 1 else 's'} for {clients:,} client certificates"


def bench_fleet(res: BenchResult, certs: str, sizes: Sizes) -> None:
    pki = _build_bench_pki(certs)
    ca = pki.cas["Contoso-CA"]
    trust = pki.trust_pem().decode()
    biggest = max(sizes.fleet)
    per_n: dict[int, dict[str, list[float]]] = {n: {} for n in sizes.fleet}
    first_errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-fleet-") as tmp:
        os.chmod(tmp, 0o700)
        began = time.perf_counter()
        files = _issue_fleet(ca, Path(tmp), biggest, dt.datetime.now(dt.UTC))
        issued_s = time.perf_counter() - began
        for _ in range(res.repeat):
            for n in sizes.fleet:
                with MpProcess(certs) as mp:
                    reset = _reset_peak_rss()
                    before = mp.ask("stats")
                    load = run_loop(drive_fleet(mp.mp_https, trust, files[:n],
                                                   concurrency=sizes.fleet_concurrency))
                    stats = mp.ask("stats")
                fig = per_n[n]
                requests = 2 * n
                fig.setdefault("wall", []).append(load.wall_s)
                fig.setdefault("rps", []).append(requests / load.wall_s)
                fig.setdefault("ms_per_client", []).append(load.wall_s * 1000 / n)
                fig.setdefault("errors", []).append(float(requests - load.done))
                fig.setdefault("mp_rss", []).append(float(stats["peak_rss_mib"]))
                if reset:
                    fig.setdefault("client_rss", []).append(peak_rss_mib())
                fig.setdefault("crl", []).append(stats["crl_gets"] / load.wall_s)
                fig.setdefault("crl_count", []).append(float(stats["crl_gets"]))
                fig.setdefault("resumed", []).append(float(load.resumed))
                fig.setdefault("client_cpu", []).append(load.cpu_s / load.wall_s)
                mp_cpu = float(stats["cpu_s"]) - float(before["cpu_s"])
                fig.setdefault("mp_cpu", []).append(mp_cpu / load.wall_s)
                fig.setdefault("mp_cpu_ms", []).append(mp_cpu * 1000 / requests)
                first_errors.extend(load.first_errors[:2])
    res.add("fleet", "fleet_issue_s", f"issue {biggest:,} client certificates (ECDSA P-256)",
            "s", [issued_s], note="setup, not timed below")
    for n in sizes.fleet:
        fig = per_n[n]
        big = n == biggest
        res.add("fleet", f"fleet_{n}_wall_s", f"fleet {n:,}: wall time", "s", fig["wall"],
                Goal("<", 90.0, "< 90 s") if big else None,
                note="register + inventory, 2 connections per client")
        res.add("fleet", f"fleet_{n}_rps", f"fleet {n:,}: requests/s", "/s", fig["rps"])
        res.add("fleet", f"fleet_{n}_errors", f"fleet {n:,}: errors", "", fig["errors"],
                Goal("<", 0.5, "none"), note="; ".join(first_errors[:2]) if big else "")
        res.add("fleet", f"fleet_{n}_mp_rss", f"fleet {n:,}: MP peak RSS", "MiB", fig["mp_rss"],
                Goal("<", 1024.0, "< 1 GiB") if big else None)
        if "client_rss" in fig:
            res.add("fleet", f"fleet_{n}_client_rss", f"fleet {n:,}: clients' peak RSS", "MiB",
                    fig["client_rss"], note="the bench process")
        res.add("fleet", f"fleet_{n}_crl_rate", f"fleet {n:,}: CRL GETs/s at the CDP server",
                "/s", fig["crl"], note=_gets(fig["crl_count"][0], n))
        res.add("fleet", f"fleet_{n}_resumed", f"fleet {n:,}: connections that resumed TLS",
                "", fig["resumed"], note="inventory resumes registration's session")
        res.add("fleet", f"fleet_{n}_mp_cpu", f"fleet {n:,}: MP CPU use", "x", fig["mp_cpu"],
                note="1 = the MP process keeps one core busy" if big else "")
        res.add("fleet", f"fleet_{n}_mp_cpu_ms", f"fleet {n:,}: MP CPU per request", "ms",
                fig["mp_cpu_ms"])
        res.add("fleet", f"fleet_{n}_client_cpu", f"fleet {n:,}: clients' CPU use", "x",
                fig["client_cpu"])
    if len(sizes.fleet) > 1:
        small = min(sizes.fleet)
        growth = [(b / s) / (biggest / small) for s, b in
                  zip(per_n[small]["wall"], per_n[biggest]["wall"], strict=True)]
        res.add("fleet", "fleet_growth", f"fleet time growth {small:,} -> {biggest:,} "
                "(1 = linear)", "x", growth, Goal("<", 1.2, "< 1.2 (linear)"))


# -- the report -----------------------------------------------------------------------------


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


def _status(res: BenchResult, fig: Figure) -> str:
    met = res.met(fig)
    if met is None:
        return "" if fig.goal is None or not res.quick else "(quick)"
    return "met" if met else "MISSED"


def rows(res: BenchResult) -> list[tuple[str, str, str, str, str, str, str]]:
    out = []
    for fig in res.figures:
        out.append((fig.group, fig.label, _format(fig.median, fig.unit),
                    _format(fig.min, fig.unit), _format(fig.max, fig.unit),
                    fig.goal.text if fig.goal else "", _status(res, fig)))
    return out


def _speedups(res: BenchResult) -> str:
    return " then ".join(f"{v:.2f}x" for v in res.speedup) or "not measured"


def summary_lines(res: BenchResult, machine: dict[str, Any]) -> list[str]:
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


FLOOR_NOTE = ("floor = the cell's MP connections x a bare mutual-TLS handshake + its CDP "
              "connections x a bare CRL GET + its plain MP connections x a bare GET, each unit "
              "timed serially in one lab in the same run; counts from one serial pass over "
              "the full selection (connections each lab server accepted)")


def render_plain(res: BenchResult, machine: dict[str, Any]) -> str:
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
    return "\n".join([head, *lines, "", *summary_lines(res, machine)]) + "\n"


def print_report(res: BenchResult, machine: dict[str, Any]) -> None:
    from lab.report.text import styled, terminal_console, write_plain

    console = terminal_console()
    if not styled(console):
        write_plain(console, render_plain(res, machine))
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
    for line in summary_lines(res, machine):
        console.print(line, markup=False, highlight=False)


def to_json(res: BenchResult, machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": res.started.isoformat(timespec="seconds"),
        "machine": machine,
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


# -- running --------------------------------------------------------------------------------


def run_bench(*, certs: str, quick: bool = False, repeat: int | None = None,
              only: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run the chosen measurements (all by default) and return their figures."""
    chosen = list(only) if only else list(GROUPS)
    for name in chosen:
        if name not in GROUPS:
            raise UsageError(f"--only: expected names from {', '.join(GROUPS)}, got {name!r}")
    repeat = 3 if repeat is None else repeat
    if repeat < 1:
        raise UsageError(f"--repeat expects a number of runs >= 1, got {repeat}")
    sizes = QUICK if quick else FULL
    res = BenchResult(quick=quick, repeat=repeat)
    from lab.pki.cache import PKICache

    certs = str(PKICache(certs).root.resolve())  # an unusable folder is a clear error
    steps: dict[str, Callable[[], None]] = {
        "cold": lambda: bench_cold(res, certs),
        "warm": lambda: bench_warm(res, certs),
        "help": lambda: bench_help(res, certs),
        "demo": lambda: bench_demo(res, certs),
        "matrix": lambda: bench_matrix(res, certs, sizes),
        "handshake": lambda: bench_handshake(res, certs, sizes),
        "fleet": lambda: bench_fleet(res, certs, sizes),
    }
    began = time.perf_counter()
    res.speedup.append(parallel_speedup())
    for name in GROUPS:
        if name not in chosen:
            continue
        if progress is not None:
            progress(name)
        try:
            steps[name]()
        except (BenchError, OSError, ssl.SSLError) as e:
            res.errors.append((name, str(e)))
    res.speedup.append(parallel_speedup())
    if min(res.speedup) < 1.6:
        res.notes.append(f"two busy processes got {min(res.speedup):.2f} cores' worth of work "
                         "done at once: the cores are shared (another job, or an "
                         "oversubscribed VM), and every figure that runs two processes "
                         "(matrix workers, MP and load generator) is slower for it")
    if "matrix" in chosen:
        res.notes.append(FLOOR_NOTE)
    if "handshake" in chosen:
        res.notes.append("handshakes: the MP's mock IIS in its own process and nginx with one "
                         "worker (ssl_protocols TLSv1.2 TLSv1.3, so that both negotiate TLS "
                         "1.3 with the generator; a server-side session cache and no "
                         "stateless tickets, as the MP keeps sessions, or, 'as installed', "
                         "its own defaults), each on its own "
                         "core; the generator (this process) makes a new connection per "
                         "request, no session resumption; the ECDSA "
                         "server and client certificates are issued by the bench under the "
                         "lab's (RSA) CA")
    if "fleet" in chosen:
        res.notes.append("fleet: lightweight clients in this process (their own ECDSA P-256 "
                         "certificate each, OpenSSL checks the MP's certificate), the MP and "
                         "its CDP server in another; each client registers on a new "
                         "connection (a full mutual-TLS handshake) and sends inventory on a "
                         "second one that resumes the TLS session, as SChannel's client "
                         "session cache does, from the MP's server-side session cache (IIS "
                         "still judges the client certificate the session carries); IIS "
                         "judges every new client certificate against the CA's CRL, "
                         "retrieved once and kept until its nextUpdate, as CryptoAPI's URL "
                         "cache does")
    res.wall_s = time.perf_counter() - began
    return res


def cli_main(args: argparse.Namespace) -> int:
    """``ibcm-lab bench``: print the table, write ``--json``; exit 1 if a measurement could
    not be made (a missed goal is a figure, not a failure)."""
    only = [v.strip() for v in args.only.split(",") if v.strip()] if args.only else None
    json_path = Path(args.json) if args.json else None
    if json_path is not None and not json_path.parent.is_dir():
        raise UsageError(f"--json {json_path}: the folder {json_path.parent} does not exist")

    def progress(name: str) -> None:
        if sys.stderr.isatty():
            print(f"ibcm-lab bench: {name}...", file=sys.stderr, flush=True)

    res = run_bench(certs=args.certs, quick=args.quick, repeat=args.repeat, only=only,
                    progress=progress)
    machine = machine_info()
    print_report(res, machine)
    if json_path is not None:
        write_json(json_path, to_json(res, machine))
    return 1 if res.errors else 0


def _child_main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "_serve":
        print("usage: python -m lab.tools.bench.bench _serve SPEC (internal to ibcm-lab bench)",
              file=sys.stderr)
        return 2
    return run_loop(_serve_mp(json.loads(argv[1])))


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
