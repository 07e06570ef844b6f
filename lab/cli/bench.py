"""``ibcm-lab bench``: measure the lab's speed."""

from __future__ import annotations

import argparse

from lab.cli.common import certs_folder

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
    from lab.tools.bench.bench import cli_main

    args.certs = certs_folder(args.certs)
    return cli_main(args)
