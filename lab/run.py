"""The one place that wires the flow: load, build, serve, replay, judge.

    results = run_paths(["scenarios/"], certs="certs")

One running lab (servers started once) serves every scenario, client and step of a call;
keys come from the ``certs/`` cache; nothing sleeps: Windows time-outs are simulated time.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from lab.client.agent import SimulatedClient
from lab.client.winhttp import WinHttp
from lab.clock import Clock
from lab.judge.verdict import judge_step, mp_answer
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.protocols.network import Machine, Network, ZoneResolver
from lab.results.runs import ClientResult, RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.scenario.loader import load_all
from lab.scenario.model import ClientSpec, Scenario, StepSpec, Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab, start_lab

DEFAULT_CERTS = Path("certs")
STEP_GAP_MS = 1000
"""Simulated time between two steps of a client (their log lines are a second apart)."""


_step_ids = itertools.count(1)


def _ad_mp(scenario: Scenario, network: Network) -> Callable[[Machine], tuple[str, bool] | None]:
    def lookup(machine: Machine) -> tuple[str, bool] | None:
        # Domain-joined clients find the site's MP (and whether it is HTTPS) in AD when a
        # domain controller answers.
        if not network.can_reach_dc(machine):
            return None
        return scenario.mp.intranet_fqdn, scenario.site.https_only
    return lookup


class ClientDriver:
    """One simulated client on a staged lab, driven a step at a time.

    ``run_scenario`` drives each ``[[client]]`` through its steps with it; ``lab.session``
    drives clients step by step from Python. Close it (or use ``async with``) to release its
    HTTP session.
    """

    def __init__(self, lab: RunningLab, deployment: Deployment, spec: ClientSpec,
                 scratch: Path) -> None:
        self.lab = lab
        self.deployment = deployment
        self.spec = spec
        scenario, pki = deployment.scenario, deployment.pki
        first = spec.steps[0].location if spec.steps else Zone.INTRANET
        self.machine = Machine(spec.name, first, spec.domain_joined, scenario.ad_domain)
        self.resolver = ZoneResolver(deployment.network, self.machine, lab.hosts)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self.resolver, force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=30))
        http = WinHttp(machine=self.machine, network=deployment.network, hosts=lab.hosts,
                       anchors=pki.roots(spec.trusted_roots),
                       trust_pem=pki.trust_pem(spec.trusted_roots),
                       intermediates=pki.intermediates(), url_retrieval=spec.url_retrieval,
                       client_cert=None, clock=deployment.clock, scratch=scratch,
                       session=self.session)
        self.agent = SimulatedClient(spec, network=deployment.network, http=http,
                                     ad_mp=_ad_mp(scenario, deployment.network),
                                     store=pki.stores.get(spec.name, ()))
        self.results: list[StepResult] = []

    async def step(self, step: StepSpec) -> StepResult:
        """Run one step and judge it (a second later than the previous one, lab time)."""
        step_id = f"s{next(_step_ids)}"
        self.deployment.clock.advance(STEP_GAP_MS)
        self.resolver.machine = self.machine.moved(step.location)
        obs = await self.agent.run_step(step, step_id)
        result = judge_step(self.deployment.scenario, self.deployment.pki, self.spec,
                            len(self.results), step, obs,
                            mp_answer(self.lab.mp_records(step_id)))
        self.results.append(result)
        return result

    async def aclose(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> ClientDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def stage_scenario(lab: RunningLab, scenario: Scenario, cache: PKICache,
                         clock: Clock | None = None) -> Deployment:
    """Build ``scenario``'s PKI and stage it on ``lab``."""
    clock = clock or Clock()
    pki = build_pki(scenario, clock, cache)
    deployment = Deployment(scenario=scenario, pki=pki, network=Network(scenario), clock=clock)
    await lab.stage(deployment)
    return deployment


@asynccontextmanager
async def staged_lab(scenario: Scenario, cache: PKICache, scratch: Path
                     ) -> AsyncIterator[tuple[RunningLab, Deployment]]:
    """Servers of their own with ``scenario`` staged on them; stopped on exit."""
    async with start_lab(scratch=str(scratch)) as lab:
        yield lab, await stage_scenario(lab, scenario, cache)


async def run_scenario(lab: RunningLab, scenario: Scenario, cache: PKICache,
                       scratch: Path) -> ScenarioResult:
    started = time.perf_counter()
    deployment = await stage_scenario(lab, scenario, cache)
    results: list[ClientResult] = []
    for spec in scenario.clients:
        async with ClientDriver(lab, deployment, spec, scratch) as driver:
            for step in spec.steps:
                await driver.step(step)
        results.append(ClientResult(spec.name, driver.results))
    return ScenarioResult(scenario, deployment.pki, results,
                          (time.perf_counter() - started) * 1000,
                          mp_records=list(lab.mp_state.records), mp_log=list(lab.mp_state.log),
                          faults=list(lab.active_faults),
                          directory_log=list(lab.directory_log),
                          cdp_records=list(lab.cdp_state.cdp_records))


async def run_loaded(scenarios: Sequence[Scenario], *, certs: str | Path = DEFAULT_CERTS,
                     cache: PKICache | None = None) -> RunResult:
    """Run already-loaded scenarios in one lab (keys from ``cache``, else from ``certs``)."""
    started = time.perf_counter()
    cache = PKICache(certs) if cache is None else cache
    result = RunResult()
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-") as scratch:
        async with start_lab(scratch=scratch) as lab:
            for scenario in scenarios:
                result.scenarios.append(await run_scenario(lab, scenario, cache, Path(scratch)))
    result.wall_ms = (time.perf_counter() - started) * 1000
    return result


def run_paths(paths: Sequence[str | Path], *, certs: str | Path = DEFAULT_CERTS) -> RunResult:
    """Load every scenario under ``paths`` (all first, so bad input fails before any run)
    and run them."""
    scenarios = load_all(paths)
    return asyncio.run(run_loaded(scenarios, certs=certs))


__all__ = ["ClientDriver", "run_loaded", "run_paths", "run_scenario", "stage_scenario",
           "staged_lab"]
