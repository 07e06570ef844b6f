"""What ``ibcm-lab bench`` measures and reports: figures, their goals, the sizes of a run, the
options of a run and its report."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("cold", "warm", "help", "demo", "timeline", "matrix", "handshake", "fleet", "soak")
"""The measurements, in the order they run (``--only`` names)."""
DEFAULT_REPEAT = 3


@dataclass(frozen=True)
class Goal:
    op: str
    """``<`` (the figure must stay below ``value``) or ``>=``."""
    value: float
    text: str

    def met(self, figure: float) -> bool:
        return figure < self.value if self.op == "<" else figure >= self.value

    def miss(self, figure: float) -> str:
        """By how much ``figure`` misses the goal, in words."""
        if self.op == "<":
            if self.value == 0:
                return f"{figure:g} instead of none"
            return f"{figure / self.value:.2f}x the limit"
        return f"{figure / self.value:.0%} of the goal" if self.value else "below the goal"


@dataclass
class Figure:
    group: str
    key: str
    label: str
    unit: str
    samples: list[float]
    goal: Goal | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")


@dataclass(frozen=True)
class Sizes:
    matrix: tuple[dict[str, list[str]], ...]
    """Matrix selections (dimension choices), smallest first; the last is the full one."""
    floor_ops: int
    """Bare operations timed per kind for the floor."""
    handshake_seconds: float
    handshake_concurrency: int
    fleet: tuple[int, ...]
    fleet_concurrency: int
    soak: tuple[int, int] = (1_000, 100_000)
    """``serve``'s memory is read after the first and after the second number of requests."""


FULL = Sizes(
    matrix=({"site_crl": ["on"], "ccmhostname": ["given"]}, {"site_crl": ["on"]}, {}),
    floor_ops=300, handshake_seconds=3.0, handshake_concurrency=50,
    fleet=(1_000, 5_000, 25_000), fleet_concurrency=200)
QUICK_BASE = {"cdp": ["ldap", "http-internet"], "names": ["both"], "smsmp": ["https"],
              "nocrlcheck": ["no"]}
QUICK = Sizes(
    matrix=({**QUICK_BASE, "site_crl": ["on"], "ccmhostname": ["given"]},
            {**QUICK_BASE, "site_crl": ["on"]}, dict(QUICK_BASE)),
    floor_ops=20, handshake_seconds=0.5, handshake_concurrency=10,
    fleet=(50, 100), fleet_concurrency=20, soak=(200, 2_000))


@dataclass(frozen=True)
class BenchOptions:
    """What to measure: ``certs`` the certificate cache folder, ``quick`` tiny sizes,
    ``repeat`` runs per figure, ``only`` some of :data:`GROUPS` (None: all)."""

    certs: str
    quick: bool = False
    repeat: int = DEFAULT_REPEAT
    only: Sequence[str] | None = None


@dataclass
class BenchReport:
    quick: bool
    repeat: int
    figures: list[Figure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(measurement, why)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(measurement, what went wrong): a measurement that could not be made."""
    notes: list[str] = field(default_factory=list)
    speedup: list[float] = field(default_factory=list)
    """:func:`~lab.tools.bench.machine.parallel_speedup` before and after the measurements."""
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    wall_s: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    """:func:`~lab.tools.bench.machine.machine_info`, taken after the measurements."""

    def add(self, group: str, key: str, label: str, unit: str, samples: Sequence[float],
            goal: Goal | None = None, note: str = "") -> Figure:
        fig = Figure(group, key, label, unit, [float(s) for s in samples], goal, note)
        self.figures.append(fig)
        return fig

    def met(self, fig: Figure) -> bool | None:
        """Whether ``fig`` meets its goal; None without a goal, or in --quick runs (the
        goals are for the full sizes)."""
        if fig.goal is None or self.quick or not fig.samples:
            return None
        return fig.goal.met(fig.median)

