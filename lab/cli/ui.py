"""``ibcm-lab ui``: the training console."""

from __future__ import annotations

import argparse
import sys

from lab.cli.common import certs_folder

NAME = "ui"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    ui = sub.add_parser("ui", help="the training console: a web page to flip the settings "
                                   "and watch the client connect, until Ctrl-C",
                        description="Start the lab and a web page on 127.0.0.1 with the "
                                    "seed's switches, the topology, a Connect button that "
                                    "runs the client's steps live, and the seed's scenes as "
                                    "presets.")
    ui.add_argument("scenario", nargs="?", default=None, metavar="SCENARIO",
                    help="a scenario file the page can run as written (default: the "
                         "switchboard only)")
    ui.add_argument("--port", type=int, default=0, metavar="N",
                    help="port on 127.0.0.1 (default 0: any free port; the address is printed)")
    ui.add_argument("--open", action="store_true", help="open the page in a browser")
    ui.add_argument("--certs", default=None, help=certs_help)


def command(args: argparse.Namespace) -> int:
    from lab.ui.app import run_console

    stopped_by = run_console(args.scenario, certs=certs_folder(args.certs), port=args.port,
                             open_browser=args.open, out=sys.stdout)
    return 128 + stopped_by  # 130 after Ctrl-C, 143 after SIGTERM
