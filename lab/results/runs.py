"""What a run produced, as plain data: each scenario's step results per client and what the
servers recorded meanwhile. :mod:`lab.run` fills these in; the reports and log writers read
them."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.pki.build import BuiltPKI
from lab.results.logline import LogLine
from lab.results.records import DirectoryRecord, MpRecord
from lab.results.verdicts import StepResult
from lab.scenario.model import Scenario


@dataclass
class ClientResult:
    name: str
    steps: list[StepResult]
    """Every step in the order it ran, ccmexec's automatic ones after an install included."""

    @property
    def scenario_steps(self) -> list[StepResult]:
        """The steps of the scenario only (the automatic ones left out): the i-th is the
        client's i-th ``[[client.step]]``."""
        return [s for s in self.steps if not s.automatic]


@dataclass
class ScenarioResult:
    scenario: Scenario
    pki: BuiltPKI
    clients: list[ClientResult]
    wall_ms: float = 0.0
    mp_records: list[MpRecord] = field(default_factory=list)
    """Every request the MP answered (the IIS log)."""
    mp_log: list[LogLine] = field(default_factory=list)
    """The MP's own log lines (MP_RegistrationManager.log)."""
    directory_log: list[DirectoryRecord] = field(default_factory=list)
    """Every LDAP operation the DC answered (the directory's request log)."""
    cdp_records: list[MpRecord] = field(default_factory=list)
    """Every request the CDP web server answered (its IIS W3C log)."""
    faults: list[str] = field(default_factory=list)
    """The scenario's active fault knobs (``name=value``)."""

    @property
    def passed(self) -> bool:
        return all(s.met for c in self.clients for s in c.steps)

    @property
    def steps(self) -> list[StepResult]:
        return [s for c in self.clients for s in c.steps]


@dataclass
class RunResult:
    scenarios: list[ScenarioResult] = field(default_factory=list)
    wall_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.scenarios)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


__all__ = ["ClientResult", "RunResult", "ScenarioResult"]
