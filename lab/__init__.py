"""ibcm-lab: a loopback lab for ConfigMgr Internet-Based Client Management.

The public API is small::

    from lab import LabSession, load_scenario, run_paths

    result = run_paths(["scenarios/"])
    print(result.passed)

    with LabSession("certs") as labs:        # a lab to drive step by step (lab.session)
        client = labs.stage("scenarios/seed3-smsmp-with-https.toml").client("PC01")
        print(client.step("install", "intranet").outcome)

Names are imported lazily, so ``import lab`` (as the pytest plugin does in every session)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.errors import LabError, ScenarioError
    from lab.results.runs import RunResult
    from lab.run import run_loaded, run_paths
    from lab.scenario.loader import load_scenario, load_scenario_text
    from lab.session import LabClient, LabSession, StagedLab, StepMissed

__version__ = "0.1.0"

_EXPORTS = {
    "LabError": "lab.errors",
    "ScenarioError": "lab.errors",
    "RunResult": "lab.results.runs",
    "run_loaded": "lab.run",
    "run_paths": "lab.run",
    "load_scenario": "lab.scenario.loader",
    "load_scenario_text": "lab.scenario.loader",
    "LabSession": "lab.session",
    "StagedLab": "lab.session",
    "LabClient": "lab.session",
    "StepMissed": "lab.session",
}

__all__ = [
    "LabClient",
    "LabError",
    "LabSession",
    "RunResult",
    "ScenarioError",
    "StagedLab",
    "StepMissed",
    "load_scenario",
    "load_scenario_text",
    "run_loaded",
    "run_paths",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
