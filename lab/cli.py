"""``ibcm-lab``: a thin command line over :mod:`lab.run`.

Exit codes: 0 every expectation met, 1 some expectation not met, 2 unusable input or usage,
3 an internal error of the lab (a bug: please report it with the message).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lab import __version__
from lab.errors import LabError, UsageError

EXIT_INTERNAL = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibcm-lab",
        description="A loopback lab that reproduces ConfigMgr Internet-Based Client "
                    "Management certificate, CRL and ccmsetup failures.")
    parser.add_argument("--version", action="version", version=f"ibcm-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    certs_help = "certificate and key cache folder (default: ./certs, or $IBCM_LAB_CERTS)"
    run = sub.add_parser("run", help="run scenario files (a folder means every *.toml in it)",
                         description="Run scenario files and compare every step with its "
                                     "expectation.")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or folder")
    run.add_argument("--format", choices=("text", "json"), default="text",
                     help="report format (default: text)")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="explain passing steps too")
    run.add_argument("--certs", default=None, help=certs_help)
    run.add_argument("--out", default=None, metavar="DIR",
                     help="write every machine's logs (CMTrace client logs, the MP's IIS W3C "
                          "log and MP_RegistrationManager.log, certutil-style traces) under "
                          "DIR/<scenario>/<machine>/")
    run.add_argument("--trace", action="store_true",
                     help="print each revocation check as certutil -verify -urlfetch would")

    demo = sub.add_parser("demo", help="walk through the seed document, scene by scene",
                          description="Reproduce every statement of the seed document: the "
                                      "failing configuration, the evidence, the fix and the "
                                      "passing twin.")
    demo.add_argument("--scene", type=int, default=None, metavar="N",
                      help="show only scene N")
    demo.add_argument("--certs", default=None, help=certs_help)
    return parser


def _certs(value: str | None) -> str:
    return value or os.environ.get("IBCM_LAB_CERTS") or "certs"


def _check_writable(folder: Path) -> None:
    """Fail before a run, not after it, when --out cannot be written."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ibcm-lab-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"--out {folder}: cannot write there ({e.strerror or e})") from None


def _run(args: argparse.Namespace) -> int:
    from lab.report.jsonout import render_json
    from lab.report.text import render_text
    from lab.run import run_paths

    out_dir = Path(args.out) if args.out is not None else None
    if out_dir is not None:
        _check_writable(out_dir)
    result = run_paths(args.paths, certs=_certs(args.certs))
    if out_dir is not None:
        from lab.logs.writer import write_logs
        from lab.report.certutil import write_traces

        write_logs(result, out_dir)
        write_traces(result, out_dir)
    if args.format == "json":
        single_file = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
        out = render_json(result, as_list=not single_file)
    else:
        out = render_text(result, args.verbose)
        if args.trace:
            from lab.report.certutil import render_trace

            out += "\n" + render_trace(result)
    sys.stdout.write(out)
    return result.exit_code


def _demo(args: argparse.Namespace) -> int:
    from lab.demo import _scene, demo_paths, render_demo
    from lab.run import run_loaded
    from lab.scenario.loader import load_all

    if args.scene is not None:
        _scene(args.scene)
    scenarios = load_all(demo_paths(args.scene))
    result = asyncio.run(run_loaded(scenarios, certs=_certs(args.certs)))
    sys.stdout.write(render_demo(result, args.scene))
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _run(args) if args.command == "run" else _demo(args)
    except LabError as e:
        print(f"ibcm-lab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ibcm-lab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # pragma: no cover - a bug; keep the user's terminal clean
        if os.environ.get("IBCM_LAB_DEBUG"):
            raise
        print(f"ibcm-lab: internal error: {type(e).__name__}: {e} "
              "(set IBCM_LAB_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
