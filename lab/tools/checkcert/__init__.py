"""``ibcm-lab check-cert``: lint an MP certificate, then replay it in the lab.

:func:`check_certificate` reads the file (:mod:`.inputs`, :mod:`.pkcs12`), lints it against
ConfigMgr's PKI requirements (:mod:`.rules`, codes in :mod:`.catalogue`), clones its profile
under a lab CA of the same kind (:mod:`.profile`) and replays it on the lab's MP for four client
situations with the site's CRL check on and off (:mod:`.replay`). :mod:`.render` writes the
report as text or JSON. Exit codes: 0 nothing at error level and every replay cell ok, 1
otherwise; unreadable input is a :class:`~lab.errors.UsageError` (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.tools.checkcert.catalogue import CATALOGUE, ERROR, INFO, WARNING, Finding, Rule
from lab.tools.checkcert.conditions import UrlCondition
from lab.tools.checkcert.inputs import (
    MAX_FILE_BYTES,
    PASSWORD_ENV,
    LoadedCert,
    load,
    read_certificates,
)
from lab.tools.checkcert.profile import Profile, build_profile, replay_scenarios, situations
from lab.tools.checkcert.render import render_json, render_text
from lab.tools.checkcert.replay import Cell, run_replay
from lab.tools.checkcert.report import CheckCertReport, check
from lab.tools.checkcert.rules import lint


def check_certificate(path: str, *, chain: str | None = None,
                      password: str | bytes | None = None, intranet_fqdn: str | None = None,
                      internet_fqdn: str | None = None, replay: bool = True,
                      certs: str | Path = "certs",
                      conditions: Sequence[UrlCondition] = ()) -> CheckCertReport:
    """Read the certificate at ``path`` (and the CA certificates at ``chain``), lint it and,
    unless ``replay`` is False, replay it in the lab with ``certs`` as the key cache.

    ``password`` opens a PKCS#12 file; without one, no password and the empty one are tried.
    The FQDNs are the MP's, as the site system's properties name them; when one is None it is
    taken from the certificate's names (the report says so). ``conditions`` replay "our CRL
    moved": CDP URLs unreachable from some zones, or serving an expired or no CRL
    (:mod:`.conditions`)."""
    if isinstance(password, str):
        password = password.encode("utf-8")
    loaded = load(path, password=password, chain=chain)
    return check(loaded, intranet=intranet_fqdn, internet=internet_fqdn, replay=replay,
                 certs=certs, conditions=conditions)


__all__ = [
    "CATALOGUE",
    "ERROR",
    "INFO",
    "MAX_FILE_BYTES",
    "PASSWORD_ENV",
    "WARNING",
    "Cell",
    "CheckCertReport",
    "Finding",
    "LoadedCert",
    "Profile",
    "Rule",
    "UrlCondition",
    "build_profile",
    "check",
    "check_certificate",
    "lint",
    "load",
    "read_certificates",
    "render_json",
    "render_text",
    "replay_scenarios",
    "run_replay",
    "situations",
]
