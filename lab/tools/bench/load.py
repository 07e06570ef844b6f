"""The registration load of ``bench/load_mp.py``: many concurrent mutual-TLS clients
registering with the mock MP (in this process, or ``ibcm-lab serve`` in its own), timed in
phases, with latency percentiles, the MP's RSS and the memory its per-request records hold.
The script's docstring says what each phase and figure means."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from lab.clock import Clock
from lab.errors import BenchError
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.protocols.network import LOOPBACK, Network
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Scenario
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab, start_lab
from lab.tools.bench.loadgen import (
    CCM_REQUEST,
    client_contexts,
    registration_message,
    reply_fault,
)
from lab.tools.bench.machine import peak_rss_mib, rss_mib
from lab.tools.bench.scenario import INTERNET, bench_scenario_text


@dataclass(frozen=True)
class LoadOptions:
    """A run of the load: ``clients`` at once, ``registrations`` timed after ``warmup``
    untimed ones, ``identities`` client certificates, ``record_sample`` traced registrations
    (0: none); ``server_process`` runs the MP as ``ibcm-lab serve``."""

    certs: str
    clients: int = 200
    registrations: int = 5000
    warmup: int = 2000
    identities: int = 20
    keep_alive: bool = False
    server_process: bool = False
    record_sample: int = 1000
    timeout: float = 60.0


def scenario_text(identities: int) -> str:
    """A site with an MP carrying both names and ``identities`` clients, each with its own
    client certificate from Contoso-CA (IIS checks every one against Contoso-CA's CRL)."""
    return bench_scenario_text([f"LOAD{i:03d}" for i in range(identities)],
                               http_cdp_only=False,
                               title="bench: many clients registering with the mock MP")


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class Phase:
    name: str
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{kind}: {detail}")

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "requests": self.requests, "ok": self.ok, "errors": self.errors,
            "first_errors": self.first_errors, "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(self.requests / self.wall_s, 1) if self.wall_s else 0.0,
            "latency_ms": {
                "min": round(lat[0], 2) if lat else 0.0,
                "p50": round(percentile(lat, 50), 2),
                "p95": round(percentile(lat, 95), 2),
                "p99": round(percentile(lat, 99), 2),
                "max": round(lat[-1], 2) if lat else 0.0,
                "mean": round(statistics.fmean(lat), 2) if lat else 0.0,
            },
        }


async def drive_registrations(*, port: int, contexts: list[ssl.SSLContext], concurrency: int,
                              total: int, keep_alive: bool, phase: Phase,
                              timeout: float) -> None:
    """``concurrency`` simulated clients, released at once, registering until ``total``
    registrations were sent; each client has its own connection pool of one."""
    url = f"https://{LOOPBACK}:{port}{CCM_REQUEST}"
    headers_base = {"Host": INTERNET, "User-Agent": "ccmhttp-lab-bench",
                    "Content-Type": "text/xml"}
    start = asyncio.Event()
    taken = 0

    async def client(index: int) -> None:
        nonlocal taken
        ctx = contexts[index % len(contexts)]
        host = f"LOAD{index % len(contexts):03d}"
        connector = aiohttp.TCPConnector(limit=1, force_close=not keep_alive)
        async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            await start.wait()
            while taken < total:
                taken += 1
                client_id = f"GUID:{str(uuid.uuid4()).upper()}"
                began = time.perf_counter()
                phase.requests += 1
                try:
                    async with session.request(
                            "CCM_POST", url, data=registration_message(client_id, host),
                            headers=headers_base, ssl=ctx, server_hostname=INTERNET) as resp:
                        body = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    phase.fail(type(e).__name__, str(e))
                    continue
                phase.latencies_ms.append((time.perf_counter() - began) * 1000)
                fault = reply_fault("registration", status, body, client_id)
                if fault is not None:
                    phase.fail(*fault)
                    continue
                phase.ok += 1

    tasks = [asyncio.create_task(client(i)) for i in range(concurrency)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    phase.wall_s = time.perf_counter() - began


def build(certs: str, identities: int) -> tuple[Scenario, BuiltPKI, Deployment]:
    """The load's scenario, its PKI (from the cache ``certs``) and its deployment."""
    scenario = load_scenario_text(scenario_text(identities), name="bench-load-mp")
    clock = Clock()
    pki = build_pki(scenario, clock, PKICache(certs))
    deployment = Deployment(scenario=scenario, pki=pki, network=Network(scenario), clock=clock)
    return scenario, pki, deployment


Served = tuple[int, RunningLab | None, Callable[[], float]]
"""The MP's HTTPS port, the lab when it runs in this process, and how to read its RSS."""


@contextlib.asynccontextmanager
async def in_process(deployment: Deployment) -> AsyncIterator[Served]:
    """The lab's servers in this process, ``deployment`` staged."""
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-") as scratch:
        async with start_lab(scratch=scratch) as lab:
            await lab.stage(deployment)
            port = lab.hosts.get(INTERNET, 443)
            assert port is not None
            yield port, lab, rss_mib


@contextlib.asynccontextmanager
async def server_process(scenario_file: Path, certs: str) -> AsyncIterator[Served]:
    """``ibcm-lab serve`` in its own process; the port is read from its connection guide."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", str(scenario_file), "--certs", certs,
         "--for-seconds", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = None
        pattern = re.compile(rf"^(?:# )?{re.escape(INTERNET)}:443 -> "
                             rf"{re.escape(LOOPBACK)}:(\d+)$")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            match = pattern.match(line.strip())
            if match:
                port = int(match.group(1))
            if line.removeprefix("# ").startswith("Press Ctrl-C"):
                break
        if port is None:
            err = proc.stderr.read() if proc.stderr else ""
            raise BenchError(f"ibcm-lab serve did not start: {err}")
        yield port, None, lambda: rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=15)
        if proc.poll() is None:
            proc.kill()


async def record_cost(lab: RunningLab, port: int, contexts: list[ssl.SSLContext],
                      count: int) -> dict[str, float]:
    """Memory the MP's per-request records hold, per request (traced; in process only)."""
    gc.collect()
    lab.mp_state.records.clear()
    lab.mp_state.log.clear()
    tracemalloc.start()
    try:
        phase = Phase("records")
        await drive_registrations(port=port, contexts=contexts, concurrency=20, total=count,
                                  keep_alive=True, phase=phase, timeout=60)
        gc.collect()
        records, lines = len(lab.mp_state.records), len(lab.mp_state.log)
        held = tracemalloc.get_traced_memory()[0]
        lab.mp_state.records.clear()
        lab.mp_state.log.clear()
        gc.collect()
        freed = held - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"requests": phase.requests, "records": records, "log_lines": lines,
            "bytes_per_request": round(freed / max(1, phase.requests), 1)}


def run_load(options: LoadOptions) -> dict[str, Any]:
    """Run the load (asyncio's event loop, as the lab's ``run``) and return its figures, as
    ``--json`` writes them."""
    return asyncio.run(_measure(options))


async def _measure(opts: LoadOptions) -> dict[str, Any]:
    _scenario, pki, deployment = build(opts.certs, opts.identities)
    contexts = client_contexts(pki)
    if opts.server_process:
        folder = Path(tempfile.mkdtemp(prefix="ibcm-lab-bench-"))
        scenario_file = folder / "bench-load-mp.toml"
        scenario_file.write_text(scenario_text(opts.identities))
        server = server_process(scenario_file, opts.certs)
    else:
        folder = None
        server = in_process(deployment)
    result: dict[str, Any] = {
        "config": {"clients": opts.clients, "registrations": opts.registrations,
                   "identities": len(contexts), "keep_alive": opts.keep_alive,
                   "server": "process" if opts.server_process else "in-process",
                   "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                   "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        async with server as (port, lab, server_rss):
            warm = Phase("warm-up")
            await drive_registrations(port=port, contexts=contexts, concurrency=opts.clients,
                                      total=opts.warmup, keep_alive=opts.keep_alive, phase=warm,
                                      timeout=opts.timeout)
            gc.collect()
            rss_before = server_rss()
            client_rss_before = rss_mib()
            records_before = len(lab.mp_state.records) if lab is not None else None
            run = Phase("run")
            samples: list[float] = []

            async def sample() -> None:
                while True:
                    samples.append(server_rss())
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            try:
                await drive_registrations(
                    port=port, contexts=contexts, concurrency=opts.clients,
                    total=opts.registrations, keep_alive=opts.keep_alive, phase=run,
                    timeout=opts.timeout)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            gc.collect()
            rss_after = server_rss()
            result["warmup"] = warm.summary()
            result["run"] = run.summary()
            result["mp_rss_mb"] = {"before": round(rss_before, 1), "after": round(rss_after, 1),
                                   "growth": round(rss_after - rss_before, 1),
                                   "min_during": round(min(samples, default=rss_after), 1),
                                   "max_during": round(max(samples, default=rss_after), 1)}
            result["bench_rss_mb"] = {"before": round(client_rss_before, 1),
                                      "after": round(rss_mib(), 1),
                                      "peak": round(peak_rss_mib(), 1)}
            if lab is not None:
                result["mp_records"] = {"before": records_before,
                                        "after": len(lab.mp_state.records),
                                        "log_lines": len(lab.mp_state.log)}
                if opts.record_sample:
                    cost = await record_cost(lab, port, contexts, opts.record_sample)
                    result["record_cost"] = cost
                    held = cost["bytes_per_request"] * run.requests / 2**20
                    result["mp_rss_mb"]["growth_beyond_records"] = round(
                        rss_after - rss_before - held, 1)
    finally:
        if folder is not None:
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
    return result


def render_table(result: dict[str, Any]) -> str:
    """The figures of :func:`run_load` as a two-column table."""
    cfg, run = result["config"], result["run"]
    lat = run["latency_ms"]
    rows = [
        ("clients at once", str(cfg["clients"])),
        ("registrations", f"{run['requests']} ({run['ok']} ok)"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in run["errors"].items()) or "none"),
        ("client certificates", str(cfg["identities"])),
        ("connections", "kept alive" if cfg["keep_alive"] else "one per registration"),
        ("MP", cfg["server"]),
        ("wall time", f"{run['wall_s']:.2f} s"),
        ("requests/s", f"{run['requests_per_s']:.0f}"),
        ("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
        ("latency min / max", f"{lat['min']:.1f} / {lat['max']:.1f} ms"),
        ("MP RSS before / after", f"{result['mp_rss_mb']['before']:.1f} / "
                                  f"{result['mp_rss_mb']['after']:.1f} MB "
                                  f"({result['mp_rss_mb']['growth']:+.1f} MB)"),
        ("MP RSS during (min-max)", f"{result['mp_rss_mb']['min_during']:.1f} - "
                                    f"{result['mp_rss_mb']['max_during']:.1f} MB"),
    ]
    if "mp_records" in result:
        rec = result["mp_records"]
        rows.append(("MP records (IIS log)", f"{rec['before']} -> {rec['after']} "
                                             f"(+{rec['log_lines']} log lines held)"))
    if "record_cost" in result:
        rows.append(("memory held per request", f"{result['record_cost']['bytes_per_request']:.0f}"
                                                " bytes (IIS record + 2 log lines)"))
        rows.append(("MP RSS growth beyond them",
                     f"{result['mp_rss_mb']['growth_beyond_records']:+.1f} MB"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    for error in run["first_errors"]:
        lines.append(f"  {error}")
    return "\n".join(lines)
