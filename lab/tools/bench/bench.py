"""``ibcm-lab bench``: how fast the lab is, as one table (and JSON).

Every figure is measured ``--repeat`` times (default 3) and shown as its median, min and max,
next to its goal (issue 7) and whether the median meets it. Measurements (``--only`` names):

``cold``, ``warm``, ``help``, ``demo``
    Wall time of a new interpreter (``python -m lab ...``, interpreter start included):
    ``run`` of one bundled scenario with an empty certificate folder (keys generated), the
    same with a warm one, ``--help``, and ``demo`` with a warm folder.
``timeline``
    One scenario whose last steps span 30 days against the same spanning one minute, in this
    process, interleaved: their wall times and ratio (simulated time is free: nothing sleeps).
``matrix``
    :func:`lab.matrix.run_matrix` in this process with the default selection (960 cells, one
    worker per core) and with a half and a quarter of it (matrix time against cell count),
    then the *floor*: what one cell's real network work costs on its own, measured in the
    same run (see :func:`.measure.floor_costs`).
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
``soak``
    ``ibcm-lab serve`` in its own process: its resident memory after 100,000 plain-HTTP
    requests against after 1,000 (goal: within 10 %; it keeps a window, and logs the rest).

``--quick`` uses tiny sizes: it proves every measurement works, it does not judge goals.
Benchmarks never run as timed tests; the test suite runs ``--quick`` once.

The modules beside this one: :mod:`.figures` (figures, goals, sizes, options, the report),
:mod:`.measure` (cold, warm, help, demo, matrix and its floor), :mod:`.handshake`,
:mod:`.fleet`, :mod:`.loadgen` (the load generator), :mod:`.processes` (the MP in its own
process), :mod:`.nginx`, :mod:`.scenario` (the bench's site and certificates),
:mod:`.machine` (cores, event loop, /proc) and :mod:`.table` (the table and JSON);
:mod:`.load` is ``bench/load_mp.py``'s registration load, on the same load generator.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

from lab.errors import BenchError, UsageError
from lab.tools.bench import fleet, handshake, measure, nginx, soak, timeline
from lab.tools.bench.figures import FULL, GROUPS, QUICK, BenchOptions, BenchReport
from lab.tools.bench.machine import machine_info, parallel_speedup

SHARED_CORES = 1.6
"""Below this :func:`parallel_speedup`, the report says the cores are shared."""


def run_bench(options: BenchOptions,
              progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run the chosen measurements (all by default) and return their figures; ``progress``
    hears each measurement's name as it starts. Bad options are a UsageError; a measurement
    that cannot be made is in the report's ``errors``."""
    chosen = list(options.only) if options.only else list(GROUPS)
    for name in chosen:
        if name not in GROUPS:
            raise UsageError(f"--only: expected names from {', '.join(GROUPS)}, got {name!r}")
    repeat = options.repeat
    if repeat < 1:
        raise UsageError(f"--repeat expects a number of runs >= 1, got {repeat}")
    sizes = QUICK if options.quick else FULL
    res = BenchReport(quick=options.quick, repeat=repeat)
    from lab.pki.cache import PKICache

    certs = str(PKICache(options.certs).root.resolve())  # an unusable folder is a clear error
    steps: dict[str, Callable[[], None]] = {
        "cold": lambda: measure.bench_cold(res, certs),
        "warm": lambda: measure.bench_warm(res, certs),
        "help": lambda: measure.bench_help(res, certs),
        "demo": lambda: measure.bench_demo(res, certs),
        "timeline": lambda: timeline.bench_timeline(res, certs),
        "matrix": lambda: measure.bench_matrix(res, certs, sizes),
        "handshake": lambda: handshake.bench_handshake(res, certs, sizes),
        "fleet": lambda: fleet.bench_fleet(res, certs, sizes),
        "soak": lambda: soak.bench_soak(res, certs, sizes),
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
    if min(res.speedup) < SHARED_CORES:
        res.notes.append(f"two busy processes got {min(res.speedup):.2f} cores' worth of work "
                         "done at once: the cores are shared (another job, or an "
                         "oversubscribed VM), and every figure that runs two processes "
                         "(matrix workers, MP and load generator) is slower for it")
    if "matrix" in chosen:
        res.notes.append(measure.FLOOR_NOTE)
    if "handshake" in chosen:
        res.notes.append(handshake.NOTE)
    if "fleet" in chosen:
        res.notes.append(fleet.NOTE)
    res.wall_s = time.perf_counter() - began
    res.machine = machine_info(nginx.nginx_version(nginx.find_nginx()))
    return res
