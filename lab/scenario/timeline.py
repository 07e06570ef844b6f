"""When each step of a scenario happens: its time after the scenario's start, and the order
the steps run in (``at``/``after`` keys, docs/scenario-format.md "Time").

A step with ``at = "+8d"`` happens that long after the start; ``after = "36h"`` that long
after the same client's previous step; a step with neither one second after the previous step
of the file (whatever its client), which is how every step ran before steps had times. Steps
run in the order of their times, the file's order on ties. Pure data: no clock is read here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lab.scenario.model import ClientSpec, StepSpec

STEP_GAP = dt.timedelta(seconds=1)
"""A step without ``at`` or ``after`` comes this long after the previous step of the file."""


@dataclass(frozen=True)
class ScheduledStep:
    client: int
    """Index of the client in the scenario."""
    index: int
    """Index of the step in its client."""
    offset: dt.timedelta
    """When the step is due, after the scenario's start."""


def schedule(clients: tuple[ClientSpec, ...] | list[ClientSpec]) -> list[ScheduledStep]:
    """Every step with its due time, in the order they run (by time; file order on ties)."""
    out: list[ScheduledStep] = []
    previous_in_file = dt.timedelta(0)
    for ci, client in enumerate(clients):
        previous_of_client: dt.timedelta | None = None
        for si, step in enumerate(client.steps):
            due = due_time(step, previous_in_file, previous_of_client)
            out.append(ScheduledStep(ci, si, due))
            previous_in_file = previous_of_client = due
    return sorted(out, key=lambda s: s.offset)  # stable: file order on ties


def due_time(step: StepSpec, previous_in_file: dt.timedelta,
             previous_of_client: dt.timedelta | None) -> dt.timedelta:
    """When ``step`` is due, after the start (see the module's docstring)."""
    if step.at is not None:
        return step.at
    if step.after is not None:
        return (previous_of_client or dt.timedelta(0)) + step.after
    return previous_in_file + STEP_GAP


def format_offset(delta: dt.timedelta) -> str:
    """A time after the scenario's start: ``+8d 00:00:01``, ``+00:00:05`` (whole seconds)."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else "+"
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{sign}{days}d {clock}" if days else f"{sign}{clock}"


__all__ = ["STEP_GAP", "ScheduledStep", "due_time", "format_offset", "schedule"]
