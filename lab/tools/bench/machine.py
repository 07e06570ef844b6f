"""The machine under the bench: its cores and versions, the event loop, and what /proc says
about a process (RSS, peak RSS, CPU time). Linux only (/proc)."""

from __future__ import annotations

import asyncio
import os
import platform
import ssl
import subprocess
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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


def machine_info(nginx: str | None) -> dict[str, Any]:
    """Cores, memory, versions (Python, OpenSSL, aiohttp, cryptography, ``nginx`` as found),
    event loop."""
    import aiohttp
    import cryptography

    return {
        "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(), "aiohttp": aiohttp.__version__,
        "cryptography": cryptography.__version__, "nginx": nginx,
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


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: ``5`` to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (from /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_or_kill(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """Wait for ``proc`` to end; kill it after ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
