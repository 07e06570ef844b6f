"""``ibcm-lab check-cert``: lint an MP certificate, then replay it in the lab."""

from __future__ import annotations

import argparse

from lab.cli.common import certs_folder

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
    cc.add_argument("--no-replay", action="store_true", help="lint only, no lab replay")
    cc.add_argument("--format", choices=("text", "json"), default="text")
    cc.add_argument("--certs", default=None, help=certs_help)


def command(args: argparse.Namespace) -> int:
    from lab.tools.checkcert.checkcert import cli_main

    args.certs = certs_folder(args.certs)
    return cli_main(args)
