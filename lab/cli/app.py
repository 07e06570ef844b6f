"""``ibcm-lab``: a thin command line over :mod:`lab.run`.

Exit codes: 0 every expectation met, 1 some expectation not met, 2 unusable input or usage,
3 an internal error of the lab (a bug: please report it with the message).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
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

    demo = sub.add_parser("demo", help="walk through the seed document, scene by scene",
                          description="Reproduce every statement of the seed document: the "
                                      "failing configuration, the evidence, the fix and the "
                                      "passing twin.")
    demo.add_argument("--scene", type=int, default=None, metavar="N",
                      help="show only scene N")
    demo.add_argument("--pause", action="store_true",
                      help="wait for Enter between scenes (for a trainer who talks)")
    demo.add_argument("--certs", default=None, help=certs_help)

    mx = sub.add_parser("matrix", help="which configurations work from where: the full grid",
                        description="Sweep the dimensions that decide IBCM outcomes and print "
                                    "a grid: rows are configurations, columns client "
                                    "situations, each cell ok or the short failure name.")
    from lab.matrix.spec import DIMENSIONS, SITUATIONS

    for dim in DIMENSIONS:
        mx.add_argument(f"--{dim.key.replace('_', '-')}", default=None, metavar="V[,V...]",
                        help=f"{dim.title}: {', '.join(dim.values)} (default: all)")
    mx.add_argument("--clients", default=None, metavar="C[,C...]",
                    help=f"client situations: {', '.join(s.key for s in SITUATIONS)} "
                         "(default: all)")
    mx.add_argument("--format", choices=("text", "json", "csv", "junit", "html"),
                    default="text", help="output format (default: text)")
    mx.add_argument("--out", default=None, metavar="FILE",
                    help="write the output to FILE instead of standard output")
    mx.add_argument("--no-fold", action="store_true",
                    help="show every row (default: fold rows that differ only in a "
                         "dimension that does not change any cell)")
    mx.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="worker processes (default: the number of cores)")
    mx.add_argument("--certs", default=None, help=certs_help)

    cc = sub.add_parser("check-cert", help="lint an MP certificate and replay it in the lab",
                        description="Check a certificate against ConfigMgr's PKI requirements, "
                                    "then replay its profile on the lab's MP and show which "
                                    "clients would fail, with which error, and why.")
    cc.add_argument("file", metavar="FILE", help="certificate: PEM, DER or PKCS#12 (.pfx)")
    cc.add_argument("--chain", default=None, metavar="FILE",
                    help="issuing CA certificates (PEM or DER), if FILE does not hold them")
    cc.add_argument("--password", default=None,
                    help="PKCS#12 password (or $IBCM_LAB_PFX_PASSWORD, or --ask-password)")
    cc.add_argument("--ask-password", action="store_true",
                    help="prompt for the PKCS#12 password")
    cc.add_argument("--intranet-fqdn", default=None, metavar="FQDN",
                    help="the MP's intranet FQDN (must be in the certificate)")
    cc.add_argument("--internet-fqdn", default=None, metavar="FQDN",
                    help="the MP's internet FQDN (must be in the certificate)")
    cc.add_argument("--no-replay", action="store_true", help="lint only, no lab replay")
    cc.add_argument("--format", choices=("text", "json"), default="text")
    cc.add_argument("--certs", default=None, help=certs_help)

    lint = sub.add_parser("ccmsetup", help="lint a ccmsetup command line for an IBCM site",
                          description="Check a ccmsetup command line against the site it will "
                                      "be used with; each finding comes with the corrected "
                                      "command line.")
    lint.add_argument("line", metavar="COMMAND_LINE",
                      help="the whole ccmsetup command line, quoted for your shell")
    lint.add_argument("--site-code", default=None, metavar="XYZ",
                      help="the site's code (SMSSITECODE should name it)")
    lint.add_argument("--intranet-fqdn", default=None, metavar="FQDN",
                      help="the MP's intranet FQDN")
    lint.add_argument("--internet-fqdn", default=None, metavar="FQDN",
                      help="the site's internet-facing MP FQDN (CCMHOSTNAME should name it)")
    lint.add_argument("--https-or-http", action="store_true",
                      help="the site allows HTTP too (default: HTTPS only)")
    lint.add_argument("--format", choices=("text", "json"), default="text")

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
    from lab.report.text import print_text, status
    from lab.run import run_paths

    report_file = args.format in ("junit", "html")
    out_dir = Path(args.out) if args.out is not None and not report_file else None
    if out_dir is not None:
        _check_writable(out_dir)
    if report_file and args.out is not None:
        _check_writable(Path(args.out).parent)
    with status("Running the scenarios..."):
        result = run_paths(args.paths, certs=_certs(args.certs))
    if report_file:
        from lab.report import html, junit

        text = (junit.render_run_junit(result) if args.format == "junit"
                else html.render_run_html(result))
        _emit(text, args.out)
        return result.exit_code
    if out_dir is not None:
        from lab.logs.writer import write_logs
        from lab.report.certutil import write_traces

        write_logs(result, out_dir)
        write_traces(result, out_dir)
    if args.format == "json":
        single_file = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
        sys.stdout.write(render_json(result, as_list=not single_file))
    else:
        print_text(result, args.verbose, trace=args.trace)
    return result.exit_code


def _emit(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (atomically) or to standard output."""
    if out is None:
        sys.stdout.write(text)
        return
    import tempfile

    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=".ibcm-lab-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        raise UsageError(f"--out {target}: cannot write it ({e.strerror or e})") from None


def _matrix(args: argparse.Namespace) -> int:
    from lab.matrix.sweep import DIMENSIONS, make_selection, run_matrix
    from lab.report import matrixout

    choices = {d.key: _split(getattr(args, d.key)) for d in DIMENSIONS}
    selection = make_selection(choices, _split(args.clients))
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs expects a number of worker processes >= 1, got {args.jobs}")
    if args.out is not None:
        _check_writable(Path(args.out).parent)
    with matrixout.progress_bar() as progress:
        result = run_matrix(selection, certs=_certs(args.certs), jobs=args.jobs,
                            progress=progress)
    if args.format == "text":
        matrixout.print_grid(result, fold_rows=not args.no_fold, out=args.out)
        return 0
    if args.format == "json":
        text = matrixout.render_json(result)
    elif args.format == "csv":
        text = matrixout.render_csv(result)
    else:
        from lab.report import html, junit

        text = (junit.render_matrix_junit(result) if args.format == "junit"
                else html.render_matrix_html(result))
    _emit(text, args.out)
    return 0


def _check_cert(args: argparse.Namespace) -> int:
    from lab.tools.checkcert.checkcert import cli_main

    args.certs = _certs(args.certs)
    return cli_main(args)


def _ccmsetup(args: argparse.Namespace) -> int:
    from lab.configmgr.lint import cli_main

    return cli_main(args)


def _serve(args: argparse.Namespace) -> int:
    from lab.tools.serve import cli_main

    args.certs = _certs(args.certs)
    return cli_main(args)


def _bench(args: argparse.Namespace) -> int:
    from lab.tools.bench.bench import cli_main

    args.certs = _certs(args.certs)
    return cli_main(args)


def _ui(args: argparse.Namespace) -> int:
    from lab.ui.app import cli_main

    args.certs = _certs(args.certs)
    return cli_main(args)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _demo(args: argparse.Namespace) -> int:
    from lab.run import run_loaded
    from lab.scenario.loader import load_all
    from lab.tools.demo import _scene, demo_paths, present

    if args.scene is not None:
        _scene(args.scene)
    scenarios = load_all(demo_paths(args.scene))
    result = asyncio.run(run_loaded(scenarios, certs=_certs(args.certs)))
    present(result, args.scene, pause=args.pause)
    return result.exit_code


def _sigterm_as_ctrl_c(signum: int, frame: object) -> None:
    signal.raise_signal(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM stops a run the way Ctrl-C does: servers stopped, temporary files removed. It
    # becomes a SIGINT, so that inside asyncio.run the runner's own SIGINT handler cancels
    # the main task cleanly (a KeyboardInterrupt raised at an arbitrary point of the event
    # loop could surface as a traceback during shutdown). Where SIGINT is ignored (a
    # background job of a non-interactive shell), SIGTERM raises KeyboardInterrupt itself.
    with contextlib.suppress(ValueError):  # only possible in the main thread
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
        else:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("ibcm-lab: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    import logging

    class _Stderr(logging.Handler):
        """Writes to whatever sys.stderr is at the time (tests swap it)."""

        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(self.format(record) + "\n")

    notes = logging.getLogger("ibcm-lab")
    if not notes.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("ibcm-lab: note: %(message)s"))
        notes.addHandler(handler)
        notes.propagate = False
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        commands = {"run": _run, "demo": _demo, "matrix": _matrix, "check-cert": _check_cert,
                    "ccmsetup": _ccmsetup, "serve": _serve, "bench": _bench, "ui": _ui}
        return commands[args.command](args)
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
