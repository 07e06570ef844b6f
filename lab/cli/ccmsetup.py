"""``ibcm-lab ccmsetup``: lint a ccmsetup command line for an IBCM site."""

from __future__ import annotations

import argparse
import sys

NAME = "ccmsetup"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
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


def command(args: argparse.Namespace) -> int:
    """0 no error finding, 1 at least one, 2 unusable line."""
    from lab.configmgr.lint import lint_ccmsetup, render_json, render_text

    report = lint_ccmsetup(
        args.line,
        site_code=args.site_code,
        intranet_fqdn=args.intranet_fqdn,
        internet_fqdn=args.internet_fqdn,
        https_only=not args.https_or_http,
    )
    render = render_json if args.format == "json" else render_text
    sys.stdout.write(render(report))
    return report.exit_code
