"""``ibcm-lab run``: run scenario files and report every step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.cli.common import certs_folder, check_writable, emit

NAME = "run"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
    run = sub.add_parser("run", help="run scenario files (a folder means every *.toml in it)",
                         description="Run scenario files and compare every step with its "
                                     "expectation.")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or folder")
    run.add_argument("--format", choices=("text", "json", "junit", "html"), default="text",
                     help="report format (default: text); junit and html go to --out FILE or "
                          "standard output")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="explain passing steps too")
    run.add_argument("--certs", default=None, help=certs_help)
    run.add_argument("--out", default=None, metavar="DIR|FILE",
                     help="text/json: write every machine's logs (CMTrace client logs, the MP's "
                          "IIS W3C log and MP_RegistrationManager.log, certutil-style traces) "
                          "under DIR/<scenario>/<machine>/; junit/html: the report FILE")
    run.add_argument("--trace", action="store_true",
                     help="print each revocation check as certutil -verify -urlfetch would")


def command(args: argparse.Namespace) -> int:
    from lab.report.jsonout import render_json
    from lab.report.text import print_text, status
    from lab.run import run_paths

    report_file = args.format in ("junit", "html")
    out_dir = Path(args.out) if args.out is not None and not report_file else None
    if out_dir is not None:
        check_writable(out_dir)
    if report_file and args.out is not None:
        check_writable(Path(args.out).parent)
    with status("Running the scenarios..."):
        result = run_paths(args.paths, certs=certs_folder(args.certs))
    if report_file:
        from lab.report import html, junit

        text = (junit.render_run_junit(result) if args.format == "junit"
                else html.render_run_html(result))
        emit(text, args.out)
        return result.exit_code
    if out_dir is not None:
        from lab.files import FolderLock
        from lab.logs.writer import write_logs
        from lab.report.certutil import write_traces

        with FolderLock(out_dir):  # two runs on one folder take turns (docs/limits.md)
            write_logs(result, out_dir)
            write_traces(result, out_dir)
    if args.format == "json":
        single_file = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
        sys.stdout.write(render_json(result, as_list=not single_file))
    else:
        print_text(result, args.verbose, trace=args.trace)
    return result.exit_code
