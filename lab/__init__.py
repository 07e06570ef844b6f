"""ibcm-lab: a loopback lab for ConfigMgr Internet-Based Client Management.

The public API is small::

    from lab import load_scenario, run_paths

    result = run_paths(["scenarios/"])
    print(result.passed)
"""

from lab.errors import LabError, ScenarioError
from lab.run import RunResult, run_loaded, run_paths
from lab.scenario.loader import load_scenario, load_scenario_text

__version__ = "0.1.0"

__all__ = [
    "LabError",
    "RunResult",
    "ScenarioError",
    "load_scenario",
    "load_scenario_text",
    "run_loaded",
    "run_paths",
]
