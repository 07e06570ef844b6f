"""``ibcm-lab``: a thin command line over :mod:`lab.run`.

Exit codes: 0 every expectation met, 1 some expectation not met, 2 unusable input or usage,
3 an internal error of the lab (a bug: please report it with the message).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from lab import __version__
from lab.cli.common import CERTS_HELP
from lab.errors import LabError
from lab.names import printable

EXIT_INTERNAL = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibcm-lab",
        description="A loopback lab that reproduces ConfigMgr Internet-Based Client "
                    "Management certificate, CRL and ccmsetup failures.")
    parser.add_argument("--version", action="version", version=f"ibcm-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from lab.cli import bench, ccmsetup, checkcert, demo, matrix, run, serve, ui

    for command in (run, demo, matrix, checkcert, ccmsetup, bench, serve, ui):
        command.add_parser(sub, CERTS_HELP)
        sub.choices[command.NAME].set_defaults(handler=command.command)
    return parser


EXIT_SIGINT = 130
EXIT_SIGTERM = 143
"""128 + the signal's number, as a shell reports a process that a signal ended."""

_terminated = False
"""Whether SIGTERM (not Ctrl-C) stopped the command: it then exits 143, not 130."""


def _sigterm_as_ctrl_c(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    signal.raise_signal(signal.SIGINT)


def _sigterm_raises(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


def _interrupted() -> int:
    """Say so, on one line, and give the exit code of the signal that stopped the command.

    asyncio's own complaints about what the interruption cut short (a transport closed in
    the middle of a handshake, a task destroyed while pending) are not the user's business:
    its logger is silenced from here on, so no traceback follows the one line."""
    import logging

    logging.getLogger("asyncio").disabled = True
    print("ibcm-lab: interrupted" if not _terminated else "ibcm-lab: terminated",
          file=sys.stderr)
    return EXIT_SIGTERM if _terminated else EXIT_SIGINT


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
            signal.signal(signal.SIGTERM, _sigterm_raises)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()


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
        command: Callable[[argparse.Namespace], int] = args.handler
        return command(args)
    except LabError as e:
        print(f"ibcm-lab: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:  # pragma: no cover - a bug; keep the user's terminal clean
        if os.environ.get("IBCM_LAB_DEBUG"):
            raise
        print(f"ibcm-lab: internal error: {type(e).__name__}: {printable(str(e))} "
              "(set IBCM_LAB_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
