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
(``RunningLab.mp_state.records``, its IIS log, and ``.log``, MP_RegistrationManager.log) hold per
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
import os
import sys
from pathlib import Path

from lab.errors import BenchError, UsageError
from lab.tools.bench.load import LoadOptions, render_table, run_load
from lab.tools.bench.table import write_json


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
    options = LoadOptions(certs=args.certs, clients=args.clients,
                          registrations=args.registrations, warmup=args.warmup,
                          identities=args.identities, keep_alive=args.keep_alive,
                          server_process=args.server_process,
                          record_sample=args.record_sample, timeout=args.timeout)
    try:
        result = run_load(options)
    except BenchError as e:
        print(e, file=sys.stderr)
        return 1
    print(render_table(result))
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
