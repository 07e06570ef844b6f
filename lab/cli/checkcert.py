"""``ibcm-lab check-cert``: lint an MP certificate, then replay it in the lab."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from lab.cli.common import certs_folder
from lab.errors import UsageError
from lab.names import is_dns_name

NAME = "check-cert"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               certs_help: str) -> None:
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
    cc.add_argument("--url-unreachable", action="append", default=[], metavar="URL[@ZONES]",
                    help="replay with this CDP URL's host unreachable from the zones "
                         "(intranet,internet,vpn,dmz; default all); repeatable")
    cc.add_argument("--url-crl-expired", action="append", default=[], metavar="URL",
                    help="replay with this CDP URL serving an expired CRL; repeatable")
    cc.add_argument("--url-crl-missing", action="append", default=[], metavar="URL",
                    help="replay with no CRL at this CDP URL (404, no LDAP object); repeatable")
    cc.add_argument("--conditions", default=None, metavar="FILE",
                    help="replay conditions in TOML: [[url]] tables with url, state "
                         "(unreachable, crl-expired, crl-missing) and from (zones)")
    cc.add_argument("--no-replay", action="store_true", help="lint only, no lab replay")
    cc.add_argument("--format", choices=("text", "json"), default="text")
    cc.add_argument("--certs", default=None, help=certs_help)


def _password(args: argparse.Namespace) -> bytes | None:
    """``--password``, else the prompt (``--ask-password``), else ``$IBCM_LAB_PFX_PASSWORD``."""
    from lab.tools.checkcert.inputs import PASSWORD_ENV

    if args.password is not None:
        return str(args.password).encode("utf-8")
    if args.ask_password:
        try:
            return getpass.getpass(f"PKCS#12 password for {args.file}: ").encode("utf-8")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("--ask-password: no password was entered") from None
    env = os.environ.get(PASSWORD_ENV)
    return env.encode("utf-8") if env is not None else None


def _fqdn(option: str, value: str | None) -> str | None:
    """A fully qualified host name (a final dot dropped), or UsageError naming ``option``."""
    if value is None:
        return None
    value = value.strip()
    if not is_dns_name(value, allow_root_dot=True) or "." not in value.strip("."):
        raise UsageError(f"{option}: expected a fully qualified DNS host name "
                         f"(mp01.contoso.local), got {value!r}")
    return value.rstrip(".")


def command(args: argparse.Namespace) -> int:
    from lab.tools.checkcert import check_certificate
    from lab.tools.checkcert.conditions import from_flag, load_file
    from lab.tools.checkcert.render import render_json, render_text

    intranet = _fqdn("--intranet-fqdn", args.intranet_fqdn)
    internet = _fqdn("--internet-fqdn", args.internet_fqdn)
    conditions = [
        *(from_flag("--url-unreachable", v, "unreachable") for v in args.url_unreachable),
        *(from_flag("--url-crl-expired", v, "crl-expired") for v in args.url_crl_expired),
        *(from_flag("--url-crl-missing", v, "crl-missing") for v in args.url_crl_missing),
        *(load_file(args.conditions) if args.conditions is not None else ()),
    ]
    if conditions and args.no_replay:
        raise UsageError("--no-replay: replay conditions need the replay")
    report = check_certificate(args.file, chain=args.chain, password=_password(args),
                               intranet_fqdn=intranet, internet_fqdn=internet,
                               replay=not args.no_replay, certs=certs_folder(args.certs),
                               conditions=conditions)
    sys.stdout.write(render_json(report) if args.format == "json" else render_text(report))
    return report.exit_code
