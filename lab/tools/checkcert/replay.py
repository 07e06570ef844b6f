"""The replay: the certificate's clone on the lab's MP, four client situations, site CRL
check on and off.

The lab publishes the CRL at exactly the certificate's URLs, and four client situations
(domain-joined on the intranet, workgroup on the intranet, on the VPN, installed inside then on
the internet a week later, ``lab.results.grid.WEEK_LATER``) run install, register, site
refresh and policy against the lab's MP, with the site's CRL check on and off: eight cells in
one lab run. ccmsetup carries ``/NoCRLCheck`` (the seed's line): the bootstrap never checks the
CRL, the site's setting decides from the first site refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.clock import Clock
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.report.jsonout import step_dict
from lab.results.verdicts import StepResult
from lab.tools.checkcert.conditions import UrlCondition
from lab.tools.checkcert.conditions import apply as apply_conditions
from lab.tools.checkcert.inputs import short_error
from lab.tools.checkcert.profile import Profile, replay_scenarios, situations

SITUATION_TITLES = {"intranet": "domain-joined, intranet", "workgroup": "workgroup, intranet",
                    "vpn": "domain-joined, VPN",
                    "internet": "installed inside, on the internet a week later"}


@dataclass
class Cell:
    """One situation at one site CRL setting: how the replay went."""

    situation: str
    site_crl: str
    """``on`` or ``off``."""
    outcome: str
    error: str | None
    error_hex: str | None
    failed_step: str | None
    """``4 (policy @ internet)`` for the first failing step."""
    detail: str
    """The failing step's error detail (``the client asked for X, the certificate names Y``)."""
    explanation: str
    fix: str
    crl: list[str]
    """The failing step's CDP retrievals, one line each (revocation failures only)."""
    steps: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"situation": self.situation, "title": SITUATION_TITLES[self.situation],
                "site_crl": self.site_crl, "outcome": self.outcome, "error": self.error,
                "error_code": self.error_hex, "failed_step": self.failed_step,
                "explanation": self.explanation, "fix": self.fix, "steps": self.steps}


def _cell(situation: str, site_crl: str, steps: Sequence[StepResult]) -> Cell:
    from lab.results.matrix import short_name

    failed = next((s for s in steps if s.outcome == "fail"), None)
    if failed is None:
        return Cell(situation, site_crl, "ok", None, None, None, "", "", "", [],
                    [step_dict(s) for s in steps])
    name = failed.error.name if failed.error is not None else short_name(failed)
    code = failed.error.hex if failed.error is not None and failed.error.numeric else None
    crl: list[str] = []
    # The CDP retrievals are the evidence of a revocation failure (the JSON steps hold them all).
    if (failed.revocation is not None and failed.revocation.checked
            and name.startswith("CRYPT_E_")):
        for u in failed.revocation.urls:
            err = f" {u.error.name}" if u.error else ""
            took = f" [{u.simulated_ms / 1000:g} s]" if u.simulated_ms else ""
            crl.append(f"{u.result:<10} {u.url}{took}{err}")
    return Cell(situation, site_crl, "fail", name, code,
                f"{failed.number} ({failed.title} @ {failed.location})",
                failed.error_message, failed.explanation,
                failed.fix, crl, [step_dict(s) for s in steps])


def run_replay(profile: Profile, certs: str | Path,
               conditions: Sequence[UrlCondition] = ()) -> list[Cell] | None:
    """Build the clone, run the eight cells in one lab run, return them (CRL on first).
    None (and ``profile.skip_reason`` set) when the lab cannot issue the clone.
    ``conditions`` make CDP URLs unreachable, or serve an expired or no CRL there."""
    from lab.run import run_loaded

    scenarios = apply_conditions(replay_scenarios(profile), conditions)
    try:
        build_pki(scenarios[0], Clock(), PKICache(certs))
    except ValueError as e:
        profile.skip_reason = ("the lab cannot issue a certificate with this profile "
                               f"({short_error(e)})")
        return None
    result = asyncio.run(run_loaded(scenarios, certs=certs))
    cells: list[Cell] = []
    for scenario_result, crl in zip(result.scenarios, ("on", "off"), strict=True):
        for key, client in zip(situations(profile), scenario_result.clients, strict=True):
            cells.append(_cell(key, crl, client.steps))
    return cells
