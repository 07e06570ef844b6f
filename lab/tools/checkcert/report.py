"""The report object and :func:`check`, which lints a loaded certificate and replays it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.clock import system_now
from lab.pki.urls import cert_aia_urls, cert_cdp_urls
from lab.tools.checkcert.catalogue import ERROR, Finding
from lab.tools.checkcert.conditions import UrlCondition, check_urls
from lab.tools.checkcert.inputs import LoadedCert
from lab.tools.checkcert.profile import Profile, build_profile
from lab.tools.checkcert.reach import lab_network, url_reach
from lab.tools.checkcert.replay import Cell, run_replay
from lab.tools.checkcert.rules import lint


@dataclass
class CheckCertReport:
    """What check-cert found: the certificate, its replay profile, the findings, the cells."""

    loaded: LoadedCert
    profile: Profile
    findings: list[Finding]
    replay: list[Cell] | None
    """None with ``--no-replay`` or when the replay was skipped (``profile.skip_reason``)."""
    reach: dict[str, tuple[list[str], str]]
    """CDP and AIA URL -> (situations that can fetch it, why)."""
    conditions: tuple[UrlCondition, ...] = ()
    """The replay conditions the user gave ("our CRL moved")."""

    @property
    def exit_code(self) -> int:
        """0: nothing at error level and every replay cell ok; 1 otherwise."""
        if any(f.severity == ERROR for f in self.findings):
            return 1
        if self.replay and any(c.outcome != "ok" for c in self.replay):
            return 1
        return 0


def check(loaded: LoadedCert, *, intranet: str | None = None, internet: str | None = None,
          replay: bool = True, certs: str | Path = "certs",
          conditions: Sequence[UrlCondition] = ()) -> CheckCertReport:
    """Lint ``loaded`` and (unless ``replay`` is False) replay it in the lab, under
    ``conditions`` (each naming one of the certificate's CDP URLs, else UsageError)."""
    check_urls(conditions, cert_cdp_urls(loaded.cert))
    now = system_now()
    profile = build_profile(loaded, intranet, internet, now)
    findings = lint(loaded, profile, intranet_given=intranet is not None,
                    internet_given=internet is not None, now=now)
    network = lab_network(profile)
    urls = list(cert_cdp_urls(loaded.cert)) + list(cert_aia_urls(loaded.cert))
    reach = {u: url_reach(u, network, profile.ad_domain) for u in urls}
    cells = None
    if replay and profile.skip_reason is None:
        cells = run_replay(profile, certs, conditions)
    return CheckCertReport(loaded, profile, findings, cells, reach, tuple(conditions))
