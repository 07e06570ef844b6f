"""Load on the mock management point: many concurrent mutual-TLS clients registering.

    python bench/load_mp.py                          # 200 at once, 5,000 registrations
    python bench/load_mp.py --clients 50 --registrations 500 --json load.json
    python bench/load_mp.py --server-process         # the MP in its own process (ibcm-lab serve)

Every registration is ``CCM_POST /ccm_system/request`` with an ``MP_ClientRegistration``
message over real mutual TLS: the client trusts the lab's roots, checks the MP's name
(``server_hostname`` = the MP's internet FQDN, connecting to 127.0.0.1 at the MP's loopback
port) and presents one of ``--identities`` lab client certificates. By default each
registration opens a new connection (a full handshake and IIS's client-certificate check);
``--keep-alive`` lets each simulated client reuse its connection.

Every answer must be 200 with a ``ClientRegistrationReply`` echoing the ClientID sent; the
script exits 1 otherwise. It prints a table (requests/s, latency percentiles, RSS before and
after) and, with ``--json FILE``, writes the same figures as JSON.

Phases: a warm-up at full concurrency (``--warmup`` registrations, not timed: the allocator
and IIS's per-certificate verdicts reach their working size), the timed run, then (in process
only) a short traced run that measures how much memory the MP's per-request records
(``MpState.records``, its IIS log, and ``MpState.log``, MP_RegistrationManager.log) hold per
request: they grow by design until the next scenario is staged, so "RSS growth" includes
them; "beyond the records" subtracts them.

With ``--server-process`` the MP runs as ``ibcm-lab serve`` (its own process and core) and
its RSS is read from /proc/<pid>/statm; otherwise the clients and the MP share one event
loop, and the figures include the clients' own TLS work. RSS is sampled during the run too
(min-max): with 200 TLS connections at once glibc's arenas swing by 10-20 MB, so "flat"
means no upward trend across runs, not an identical number. Linux only (/proc).
"""

from __future__ import annotations

import argparse
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
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from lab.clock import Clock
from lab.errors import UsageError
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.protocols.network import Network
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Scenario
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab, start_lab
from lab.tools.bench.bench import (
    bench_scenario_text,
    client_contexts,
    peak_rss_mib,
    registration_message,
    rss_mib,
    write_json,
)

INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
PATH = "/ccm_system/request"


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


async def drive(*, port: int, contexts: list[ssl.SSLContext], concurrency: int, total: int,
                keep_alive: bool, phase: Phase, timeout: float) -> None:
    """``concurrency`` simulated clients, released at once, registering until ``total``
    registrations were sent; each client has its own connection pool of one."""
    url = f"https://127.0.0.1:{port}{PATH}"
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
                if status != 200:
                    phase.fail(f"HTTP {status}", body[:200].decode("latin-1"))
                    continue
                try:
                    root = ET.fromstring(body)
                except ET.ParseError as e:
                    phase.fail("bad XML", str(e))
                    continue
                if (root.tag != "ClientRegistrationReply"
                        or root.attrib.get("ClientID") != client_id
                        or root.attrib.get("ApprovalStatus") != "1"):
                    phase.fail("wrong reply", body[:200].decode("latin-1"))
                    continue
                phase.ok += 1

    tasks = [asyncio.create_task(client(i)) for i in range(concurrency)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    phase.wall_s = time.perf_counter() - began


def build(certs: str, identities: int) -> tuple[Scenario, BuiltPKI, Deployment]:
    scenario = load_scenario_text(scenario_text(identities), name="bench-load-mp")
    clock = Clock()
    pki = build_pki(scenario, clock, PKICache(certs))
    deployment = Deployment(scenario=scenario, pki=pki, network=Network(scenario), clock=clock)
    return scenario, pki, deployment


@contextlib.asynccontextmanager
async def in_process(deployment: Deployment) -> AsyncIterator[tuple[int, RunningLab | None,
                                                                     Callable[[], float]]]:
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-") as scratch:
        async with start_lab(scratch=scratch) as lab:
            await lab.stage(deployment)
            port = lab.hosts.get(INTERNET, 443)
            assert port is not None
            yield port, lab, rss_mib


@contextlib.asynccontextmanager
async def server_process(scenario_file: Path, certs: str
                         ) -> AsyncIterator[tuple[int, RunningLab | None, Callable[[], float]]]:
    """``ibcm-lab serve`` in its own process; the port is read from its connection guide."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", str(scenario_file), "--certs", certs,
         "--for-seconds", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = None
        pattern = re.compile(rf"^{re.escape(INTERNET)}:443 -> 127\.0\.0\.1:(\d+)$")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            match = pattern.match(line.strip())
            if match:
                port = int(match.group(1))
            if line.startswith("Press Ctrl-C"):
                break
        if port is None:
            err = proc.stderr.read() if proc.stderr else ""
            raise SystemExit(f"ibcm-lab serve did not start: {err}")
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
        await drive(port=port, contexts=contexts, concurrency=20, total=count,
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


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    _scenario, pki, deployment = build(args.certs, args.identities)
    contexts = client_contexts(pki)
    if args.server_process:
        folder = Path(tempfile.mkdtemp(prefix="ibcm-lab-bench-"))
        scenario_file = folder / "bench-load-mp.toml"
        scenario_file.write_text(scenario_text(args.identities))
        server = server_process(scenario_file, args.certs)
    else:
        folder = None
        server = in_process(deployment)
    result: dict[str, Any] = {
        "config": {"clients": args.clients, "registrations": args.registrations,
                   "identities": len(contexts), "keep_alive": args.keep_alive,
                   "server": "process" if args.server_process else "in-process",
                   "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                   "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        async with server as (port, lab, server_rss):
            warm = Phase("warm-up")
            await drive(port=port, contexts=contexts, concurrency=args.clients,
                        total=args.warmup, keep_alive=args.keep_alive, phase=warm,
                        timeout=args.timeout)
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
                await drive(port=port, contexts=contexts, concurrency=args.clients,
                            total=args.registrations, keep_alive=args.keep_alive, phase=run,
                            timeout=args.timeout)
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
                if args.record_sample:
                    cost = await record_cost(lab, port, contexts, args.record_sample)
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


def table(result: dict[str, Any]) -> str:
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200,
                   help="simulated clients registering at once (default 200)")
    p.add_argument("--registrations", type=int, default=5000,
                   help="registrations in all, after the warm-up (default 5000)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed registrations before the run, at full concurrency, so the "
                        "allocator reaches its working size (default: 10 per client, at "
                        "least 2000)")
    p.add_argument("--identities", type=int, default=20,
                   help="distinct client certificates (default 20)")
    p.add_argument("--keep-alive", action="store_true",
                   help="reuse each client's connection (default: a new TLS connection per "
                        "registration)")
    p.add_argument("--server-process", action="store_true",
                   help="run the MP in its own process (ibcm-lab serve) instead of in this one")
    p.add_argument("--record-sample", type=int, default=1000,
                   help="registrations of the traced phase measuring the MP's per-request "
                        "records (in process only; 0 skips it; default 1000)")
    p.add_argument("--certs", default=os.environ.get("IBCM_LAB_CERTS") or "certs",
                   help="certificate cache folder (default ./certs or $IBCM_LAB_CERTS)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="per-request time-out in seconds (default 60)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.registrations < 1 or args.identities < 1:
        p.error("--clients, --registrations and --identities must be at least 1")
    if args.json and not Path(args.json).parent.is_dir():
        p.error(f"--json {args.json}: the folder {Path(args.json).parent} does not exist")
    if args.warmup is None:
        args.warmup = max(10 * args.clients, 2000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    print(table(result))
    if args.json:
        try:
            write_json(Path(args.json), result)
        except UsageError as e:
            print(f"load_mp.py: error: {e}", file=sys.stderr)
            return 2
    run = result["run"]
    return 0 if run["ok"] == run["requests"] == args.registrations else 1


if __name__ == "__main__":
    sys.exit(main())

