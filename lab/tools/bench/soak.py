"""``ibcm-lab bench --only soak``: memory of a long-running ``ibcm-lab serve`` (issue 23).

``serve`` keeps only a window of the requests its servers answered (the rest goes to its
log files), so its resident memory after many requests should be what it was after a few.
The soak starts ``serve`` on a bundled scenario in its own process, sends plain-HTTP
requests to the MP on keep-alive connections (IIS answers 403.4 on an HTTPS-only site: no
handshake, so the figure is about what the servers keep, not about TLS), and reads the
process's resident set size after the first and after the last batch. The figure is the
ratio (goal: within 10 %), both measured in the same run.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import aiohttp

from lab.errors import BenchError
from lab.tools.bench.figures import BenchReport, Goal, Sizes
from lab.tools.bench.machine import rss_mib, wait_or_kill

SCENARIO = "seed3-smsmp-with-https.toml"
_PORT = re.compile(r"^# (\S+):80 -> [\d.]+:(\d+)$")


def _scenario_path() -> str:
    from importlib.resources import files

    return str(files("lab.bundled") / SCENARIO)


async def _send(port: int, host: str, count: int, concurrency: int) -> int:
    """``count`` GETs of the MP list; the number answered (any status)."""
    answered = 0
    url = f"http://127.0.0.1:{port}/SMS_MP/.sms_aut?MPLIST"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        left = count

        async def worker() -> None:
            nonlocal left, answered
            while left > 0:
                left -= 1
                async with session.get(url, headers={"Host": host}) as response:
                    await response.read()
                    answered += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def bench_soak(res: BenchReport, certs: str, sizes: Sizes) -> None:
    first, total = sizes.soak
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", _scenario_path(),
                             "--certs", certs, "--for-seconds", "3600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port, host = 0, ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = _PORT.match(line.rstrip("\n"))
            if m and not port:
                host, port = m.group(1), int(m.group(2))
            if line.startswith("# Press Ctrl-C"):
                break
        if not port:
            why = proc.stderr.read() if proc.stderr else ""
            raise BenchError(f"soak: serve did not start: {why.strip()[:300]}")
        samples_first: list[float] = []
        samples_last: list[float] = []
        sent = asyncio.run(_send(port, host, first, 20))
        samples_first.append(rss_mib(proc.pid))
        sent += asyncio.run(_send(port, host, total - first, 20))
        samples_last.append(rss_mib(proc.pid))
        if sent != total:
            raise BenchError(f"soak: {sent} of {total} requests answered")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        wait_or_kill(proc, timeout=60)
    ratio = samples_last[0] / samples_first[0]
    res.add("soak", f"soak_rss_{first}", f"serve RSS after {first:,} requests", "MiB",
            samples_first, note="plain-HTTP GETs on keep-alive connections")
    res.add("soak", f"soak_rss_{total}", f"serve RSS after {total:,} requests", "MiB",
            samples_last)
    res.add("soak", "soak_rss_ratio", f"serve RSS after {total:,} / after {first:,} requests",
            "x", [ratio], Goal("<", 1.10, "within 10 %"))
