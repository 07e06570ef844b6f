"""The lab's one clock.

Every date the lab writes (certificate validity, CRL thisUpdate/nextUpdate, log time stamps)
comes from a :class:`Clock`. Windows time-outs are *simulated*: :meth:`Clock.advance` moves
the clock forward without sleeping, so a 15-second CRL retrieval time-out costs nothing.

This module is the only place in the lab that reads the system time.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo

UTC = _dt.UTC


def system_now() -> _dt.datetime:
    """The real current time (UTC, whole milliseconds)."""
    now = _dt.datetime.now(UTC)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def zone_info(name: str) -> _dt.tzinfo:
    """The time zone called ``name`` (``UTC``, ``Asia/Tokyo``); ValueError if unknown."""
    if name.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


class Clock:
    """A simulated clock: starts at a fixed instant and only moves when told to.

    ``Clock()`` starts at the real current time; ``Clock(start)`` at ``start`` (which must be
    timezone-aware). The clock never moves on its own, so two reads in a row are equal.
    """

    def __init__(self, start: _dt.datetime | None = None) -> None:
        if start is None:
            start = system_now()
        if start.tzinfo is None:
            raise ValueError("Clock start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._elapsed_ms = 0

    @property
    def start(self) -> _dt.datetime:
        """The instant the clock started at."""
        return self._start

    def now(self) -> _dt.datetime:
        """The current simulated time (UTC)."""
        return self._start + _dt.timedelta(milliseconds=self._elapsed_ms)

    @property
    def elapsed_ms(self) -> int:
        """Simulated milliseconds since :attr:`start`."""
        return self._elapsed_ms

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` simulated milliseconds (never sleeps)."""
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self._elapsed_ms += ms

    def advance_to(self, when: _dt.datetime) -> None:
        """Move the clock forward to ``when`` (a step's time); an instant already passed
        leaves it where it is. Never sleeps: a jump of 30 days costs what a second does."""
        ms = (when - self.now()) // _dt.timedelta(milliseconds=1)
        if ms > 0:
            self.advance(ms)
