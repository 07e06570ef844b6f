"""``ibcm-lab bench``: measure the lab's speed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.cli.common import certs_folder, split_list
from lab.errors import UsageError

NAME = "bench"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    bench = sub.add_parser("bench", help="measure the lab's speed: a table and JSON",
                           description="Run the benchmark: cold and warm runs, --help, the "
                                       "demo, the matrix against its floor, MP handshakes "
                                       "(against nginx when installed) and fleet load.")
    bench.add_argument("--quick", action="store_true",
                       help="tiny sizes, to check that every measurement works")
    bench.add_argument("--repeat", type=int, default=None, metavar="N",
                       help="runs per figure (the table shows median, min and max)")
    bench.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                       help="run only these measurements")
    bench.add_argument("--json", default=None, metavar="FILE",
                       help="also write the figures as JSON to FILE")
    bench.add_argument("--certs", default=None, help=certs_help)


def command(args: argparse.Namespace) -> int:
    """Print the table, write ``--json``; exit 1 if a measurement could not be made (a missed
    goal is a figure, not a failure)."""
    from lab.tools.bench.bench import run_bench
    from lab.tools.bench.figures import DEFAULT_REPEAT, BenchOptions
    from lab.tools.bench.table import print_report, to_json, write_json

    json_path = Path(args.json) if args.json else None
    if json_path is not None and not json_path.parent.is_dir():
        raise UsageError(f"--json {json_path}: the folder {json_path.parent} does not exist")

    def progress(name: str) -> None:
        if sys.stderr.isatty():
            print(f"ibcm-lab bench: {name}...", file=sys.stderr, flush=True)

    options = BenchOptions(certs=certs_folder(args.certs), quick=args.quick,
                           repeat=DEFAULT_REPEAT if args.repeat is None else args.repeat,
                           only=split_list(args.only))
    report = run_bench(options, progress)
    print_report(report)
    if json_path is not None:
        write_json(json_path, to_json(report))
    return 1 if report.errors else 0
