"""The ``timeline`` measurement: simulated time costs no wall time.

The same scenario (an enterprise CA publishing base and delta CRLs on AD CS's schedule, one
client that installs, registers, refreshes and then sends inventory three times) runs with
its last three steps spread over 30 days and over one minute. Nothing sleeps, so the two take
the same wall time: the figure is their ratio, measured in the same run, interleaved.
"""

from __future__ import annotations

import asyncio
import time

from lab.errors import BenchError
from lab.pki.cache import PKICache
from lab.run import run_loaded
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Scenario
from lab.tools.bench.figures import BenchReport, Goal

SCENARIO = """
[scenario]
title = "bench: a client over {span}"

[[ca]]
name = "Contoso-CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
cdp = ["ldap", "http"]
delta_cdp = ["http"]

[mp]
intranet_fqdn = "IBCM-Intra.contoso.local"
internet_fqdn = "IBCM-Internet.public.com"

[mp.cert]
issuer = "Contoso-CA"

[[client]]
name = "PC01"
ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local"

[[client.step]]
action = "install"
location = "intranet"
expect = "ok"

[[client.step]]
action = "register"
location = "intranet"
expect = "ok"

[[client.step]]
action = "location"
location = "intranet"
expect = "ok"
{later}
"""
LATER = """
[[client.step]]
action = "inventory"
location = "intranet"
at = "{at}"
expect = "ok"
"""
SPANS = {"30 days": ("+10d", "+20d", "+30d"), "one minute": ("+20s", "+40s", "+60s")}


def text(span: str) -> str:
    """The bench's scenario (TOML) with its last three steps spread over ``span`` (a SPANS
    key)."""
    return SCENARIO.format(span=span, later="".join(LATER.format(at=at) for at in SPANS[span]))


def scenario(span: str) -> Scenario:
    """:func:`text`, loaded."""
    return load_scenario_text(text(span), name=f"bench-timeline-{span.replace(' ', '-')}")


def _run(s: Scenario, cache: PKICache) -> tuple[float, int]:
    """Wall seconds of one run, and how many CRLs the CAs signed after the build."""
    began = time.perf_counter()
    result = asyncio.run(run_loaded([s], cache=cache))
    wall = time.perf_counter() - began
    if not result.passed:
        raise BenchError(f"the bench scenario {s.name} did not pass")
    publisher = result.scenarios[0].pki.publisher
    return wall, publisher.signed_count if publisher is not None else 0


def bench_timeline(res: BenchReport, certs: str) -> None:
    cache = PKICache(certs)
    long, short = scenario("30 days"), scenario("one minute")
    _run(short, cache)  # warms certs/
    walls: dict[str, list[float]] = {"long": [], "short": []}
    signed = 0
    for _ in range(res.repeat):
        wall, _signed = _run(short, cache)
        walls["short"].append(wall)
        wall, signed = _run(long, cache)
        walls["long"].append(wall)
    res.add("timeline", "timeline_30d_s", "a scenario spanning 30 days", "s", walls["long"],
            note=f"{signed} CRLs signed after the build (only those served)")
    res.add("timeline", "timeline_1m_s", "the same spanning one minute", "s", walls["short"])
    ratios = [a / b for a, b in zip(walls["long"], walls["short"], strict=True)]
    res.add("timeline", "timeline_ratio", "30 days / one minute (1 = time is free)", "x",
            ratios, Goal("<", 1.5, "< 1.5x (nothing sleeps)"))


__all__ = ["SPANS", "bench_timeline", "scenario", "text"]
