"""``ibcm-lab serve``: a scenario's servers for curl, openssl or a browser."""

from __future__ import annotations

import argparse
import sys

from lab.cli.common import certs_folder

NAME = "serve"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    serve = sub.add_parser("serve", help="start a scenario's servers for curl, openssl or a "
                                         "browser, until Ctrl-C",
                           description="Start the scenario's mock MP, CDP server and directory "
                                       "and print, per host, the port, a hosts-file line and "
                                       "ready curl and openssl commands (ldapsearch for the "
                                       "directory).")
    serve.add_argument("scenario", metavar="SCENARIO", help="scenario file")
    serve.add_argument("--host", default=None,
                       help="address to bind (default 127.0.0.1; anything else is exposed "
                            "to the network and is warned about)")
    serve.add_argument("--certs", default=None, help=certs_help)
    serve.add_argument("--for-seconds", type=float, default=None, metavar="S",
                       help="stop by itself after S seconds (for scripts and tests)")


def command(args: argparse.Namespace) -> int:
    from lab.tools.serve import serve_scenario

    report = serve_scenario(args.scenario, certs=certs_folder(args.certs), host=args.host,
                            for_seconds=args.for_seconds, out=sys.stdout)
    # stopped by Ctrl-C or SIGTERM: 130 or 143, as a shell reports a job a signal ended
    return 0 if report.stopped_by is None else 128 + report.stopped_by
