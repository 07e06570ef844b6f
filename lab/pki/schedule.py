"""When a CA publishes its CRLs, as AD CS does (docs/scenario-format.md "Time", reference §4.4a).

The CA publishes a base CRL every ``crl_period`` and, when it publishes delta CRLs, a delta
CRL every ``delta_period``, both counted from the scenario's start (publication 0 at the
start is the CRL current at the start). Each publication carries the next CRL number (base
and delta CRLs share one sequence, RFC 5280 §5.2.3; a base published at the same instant as a
delta takes its number first). A CRL published at ``p`` has

* thisUpdate  = p - 10 minutes (AD CS's ClockSkewMinutes),
* Next CRL Publish = p + period (when the CA will publish the next one),
* nextUpdate  = p + period + overlap (overlap: 10 % of the period, at most 12 hours, unless
  set).

A CA switched off from ``offline_from`` publishes nothing at or after it; a CA whose CRL dates
are fixed (``crl_this_update``/``crl_next_update``) or whose CRL a fault replaces publishes
only publication 0. Everything is computed in closed form: a 30-day scenario costs no more
than a one-minute one (only the CRLs a server is asked for are ever signed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lab.scenario.model import CASpec

CLOCK_SKEW = dt.timedelta(minutes=10)
"""AD CS backdates a CRL's thisUpdate by ClockSkewMinutes (10) (reference §4.4a)."""
MAX_DEFAULT_OVERLAP = dt.timedelta(hours=12)
"""The default overlap is 10 % of the period, at most 12 hours (reference §4.4a)."""


def default_overlap(period: dt.timedelta) -> dt.timedelta:
    """AD CS's overlap when none is set: 10 % of the period, at most 12 hours."""
    return min(period / 10, MAX_DEFAULT_OVERLAP)


@dataclass(frozen=True)
class CrlIssue:
    """One CRL the CA published: base (``delta_of`` None) or delta of base ``delta_of``."""

    index: int
    """Which publication of its kind (0: the one current at the scenario's start)."""
    number: int
    """The CRL number (one sequence for base and delta CRLs)."""
    published: dt.datetime
    this_update: dt.datetime
    next_update: dt.datetime
    next_publish: dt.datetime | None
    """The Next CRL Publish time (None: the CA will not publish again, e.g. fixed dates)."""
    delta_of: int | None = None
    """For a delta CRL: the number of the base CRL it completes."""

    @property
    def is_delta(self) -> bool:
        return self.delta_of is not None


def _ms(delta: dt.timedelta) -> int:
    return int(delta / dt.timedelta(milliseconds=1))


class CrlSchedule:
    """The publications of one CA over the scenario, from ``start`` (the lab clock's start)."""

    def __init__(self, spec: CASpec, start: dt.datetime, *, deltas: bool,
                 frozen: bool = False) -> None:
        self.spec = spec
        self.start = start
        self.period = spec.crl_period
        self.delta_period = spec.delta_period if deltas else dt.timedelta(0)
        self.overlap = (spec.crl_overlap if spec.crl_overlap is not None
                        else default_overlap(self.period))
        self.delta_overlap = (spec.delta_overlap if spec.delta_overlap is not None
                              else default_overlap(self.delta_period))
        self.fixed = spec.crl_dates_fixed
        """The scenario set the CRL's dates: publication 0 has them and nothing follows."""
        self.frozen = frozen or self.fixed
        offline = dt.timedelta(0) if self.frozen else spec.offline_from
        self.offline_at: dt.datetime | None = None if offline is None else start + offline
        """From this instant the CA publishes nothing (publication 0 is always there)."""

    @property
    def has_deltas(self) -> bool:
        return self.delta_period > dt.timedelta(0)

    # -- which publication is current -------------------------------------------------------

    def _index(self, now: dt.datetime, period: dt.timedelta) -> int:
        """The last publication of a kind due at or before ``now`` (and before the CA went
        offline); 0 before the start."""
        if now <= self.start:
            return 0
        last = (now - self.start) // period
        if self.offline_at is not None:
            # The last publication strictly before offline_at (0 at the latest).
            before = max(0, -(-(self.offline_at - self.start) // period) - 1)
            last = min(last, before)
        return int(last)

    def _number_of_base(self, k: int) -> int:
        ms = _ms(self.period) * k
        deltas_before = 0 if not self.has_deltas else -(-ms // _ms(self.delta_period))
        return k + deltas_before + 1

    def _number_of_delta(self, j: int) -> int:
        ms = _ms(self.delta_period) * j
        bases_at_or_before = ms // _ms(self.period) + 1
        return bases_at_or_before + j + 1

    def base(self, k: int) -> CrlIssue:
        """Base publication ``k``."""
        published = self.start + k * self.period
        if self.fixed:
            return CrlIssue(0, 1, published, self.start + self.spec.crl_this_update,
                            self.start + self.spec.crl_next_update, None)
        more = self.offline_at is None or published + self.period < self.offline_at
        return CrlIssue(k, self._number_of_base(k), published, published - CLOCK_SKEW,
                        published + self.period + self.overlap,
                        published + self.period if more or not self.frozen else None)

    def delta(self, j: int) -> CrlIssue:
        """Delta publication ``j`` (the CA publishes delta CRLs)."""
        published = self.start + j * self.delta_period
        base_k = (j * _ms(self.delta_period)) // _ms(self.period)
        if self.offline_at is not None:
            base_k = min(base_k, self._index(published, self.period))
        return CrlIssue(j, self._number_of_delta(j), published, published - CLOCK_SKEW,
                        published + self.delta_period + self.delta_overlap,
                        None if self.frozen else published + self.delta_period,
                        delta_of=self.base(base_k).number)

    def current(self, now: dt.datetime) -> tuple[CrlIssue, CrlIssue | None]:
        """The base and delta CRLs on the CA's distribution points at ``now``."""
        base = self.base(self._index(now, self.period))
        delta = self.delta(self._index(now, self.delta_period)) if self.has_deltas else None
        return base, delta

    def published_until(self, now: dt.datetime) -> list[CrlIssue]:
        """Every CRL published from the start up to ``now``, in order of publication."""
        out = [self.base(k) for k in range(self._index(now, self.period) + 1)]
        if self.has_deltas:
            out += [self.delta(j) for j in range(self._index(now, self.delta_period) + 1)]
        return sorted(out, key=lambda c: c.number)

    def changes_after(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant after ``now`` at which what the CA has published changes or a
        published CRL's validity changes (a publication, a thisUpdate or a nextUpdate)."""
        base, delta = self.current(now)
        candidates = [base.this_update, base.next_update]
        if delta is not None:
            candidates += [delta.this_update, delta.next_update]
        for period in (self.period, self.delta_period):
            if period > dt.timedelta(0):
                upcoming = self.start + (self._index(now, period) + 1) * period
                if not self.frozen and (self.offline_at is None or upcoming < self.offline_at):
                    candidates.append(upcoming)
        later = [c for c in candidates if c > now]
        return min(later) if later else None


__all__ = ["CLOCK_SKEW", "CrlIssue", "CrlSchedule", "default_overlap"]
