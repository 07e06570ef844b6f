"""The one place that wires the flow: load, build, serve, replay, judge.

    results = run_paths(["scenarios/"], certs="certs")

One running lab (servers started once) serves every scenario, client and step of a call;
keys come from the ``certs/`` cache; nothing sleeps: Windows time-outs are simulated time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp

from lab.client.agent import CCMEXEC_STARTUP, RegistrationFailure, SimulatedClient
from lab.client.winhttp import WinHttp
from lab.clock import Clock
from lab.judge.verdict import judge_step, mp_answer
from lab.pki.background import build_pki_async
from lab.pki.cache import PKICache
from lab.protocols.network import Machine, Network, ZoneResolver
from lab.report.text import step_summary
from lab.results.runs import ClientResult, RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.scenario.loader import load_all
from lab.scenario.model import Action, ClientSpec, Scenario, StepSpec, Zone
from lab.scenario.timeline import schedule
from lab.servers.deployment import Deployment
from lab.servers.harness import RunningLab, start_lab

DEFAULT_CERTS = Path("certs")
STEP_GAP_MS = 1000
"""A step starts at least this long after the previous one ended (lab time): steps without
``at``/``after`` are a second apart, and a step due earlier than the previous one's end (its
time-outs took longer) waits for it."""
CCMEXEC_START_MS = 5000
"""Simulated time from the end of a successful install to ccmexec's first automatic step, its
registration (the lab's choice; the automatic steps that follow are STEP_GAP_MS apart)."""


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
        """Every step run, the automatic ones included (``StepResult.automatic``)."""
        self.steps_run = 0
        """How many steps of the scenario (not automatic ones) have run."""
        self.last_due: dt.datetime | None = None
        """When this client's previous step was due (``after`` counts from it)."""
        self._cache_filled = spec.url_cache is None
        """Whether the starting URL cache (``[client.url_cache]``) is in place yet."""

    async def fill_url_cache(self) -> None:
        """The client's starting URL cache (``[client.url_cache]``): a chain check of the
        MP's certificate from ``filled_on``, as the machine made it there, ``at`` ago."""
        start = self.spec.url_cache
        self._cache_filled = True
        if start is None:
            return
        http = self.agent.http
        where = self.machine.moved(start.filled_on)
        before = http.machine
        self.resolver.machine = http.machine = where
        try:
            mp = self.deployment.scenario.mp
            host = mp.intranet_fqdn if start.filled_on in (Zone.INTRANET, Zone.VPN) \
                or mp.internet_fqdn is None else mp.internet_fqdn
            notes = await http.fill_url_cache(host, 443, start.at)
        finally:
            self.resolver.machine = http.machine = before
        self.agent.pending_notes.extend(notes)

    def due(self, step: StepSpec) -> dt.datetime | None:
        """When ``step`` is due by its ``at``/``after`` (None: neither, a second later)."""
        clock = self.deployment.clock
        if step.at is not None:
            return clock.start + step.at
        if step.after is not None:
            return (self.last_due or clock.start) + step.after
        return None

    async def step(self, step: StepSpec, due: dt.datetime | None = None) -> StepResult:
        """Run one step and judge it at its time: ``due`` (default: from the step's
        ``at``/``after``), and never sooner than a second after the previous step ended. After
        a successful install, ccmexec's start-up work follows as automatic steps (in
        ``results`` and the install's ``followups``)."""
        if not self._cache_filled:
            await self.fill_url_cache()
        clock = self.deployment.clock
        due = self.due(step) if due is None else due
        earliest = clock.now() + dt.timedelta(milliseconds=STEP_GAP_MS)
        clock.advance_to(earliest if due is None else max(due, earliest))
        self.last_due = due if due is not None else clock.now()
        result = await self._judged(step, self.steps_run)
        self.steps_run += 1
        if step.action is Action.INSTALL and result.outcome == "ok":
            where = step.ccmexec_location or step.location
            for n, action in enumerate(CCMEXEC_STARTUP):
                clock.advance(CCMEXEC_START_MS if n == 0 else STEP_GAP_MS)
                result.followups.append(await self._judged(
                    StepSpec(action, where), result.index, sub="abcdefghij"[n]))
        return result

    async def _judged(self, step: StepSpec, index: int, *, sub: str = "") -> StepResult:
        step_id = f"s{next(_step_ids)}"
        clock = self.deployment.clock
        started = clock.now()
        self.resolver.machine = self.machine.moved(step.location)
        obs = await self.agent.run_step(step, step_id, automatic=bool(sub))
        result = judge_step(self.deployment.scenario, self.deployment.pki, self.spec,
                            index, step, obs, mp_answer(self.lab.mp_records(step_id)))
        result.automatic, result.sub = bool(sub), sub
        result.at, result.since_start = started, started - clock.start
        self.results.append(result)
        if step.action is Action.REGISTER:
            self.agent.registration_judged(None if result.outcome == "ok" else RegistrationFailure(
                result.number, result.automatic, step_summary(result).removeprefix("FAIL "),
                frozenset(result.identifiers), result.fix))
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
    pki = await build_pki_async(scenario, clock, cache)  # Ctrl-C stops it between two keys
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
    start = deployment.clock.start
    async with AsyncExitStack() as stack:
        drivers = [await stack.enter_async_context(ClientDriver(lab, deployment, spec, scratch))
                   for spec in scenario.clients]
        # Every step at its time, in time order (the file's order on ties): one clock.
        for planned in schedule(scenario.clients):
            driver = drivers[planned.client]
            await driver.step(driver.spec.steps[planned.index], start + planned.offset)
    results = [ClientResult(d.spec.name, d.results) for d in drivers]
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
