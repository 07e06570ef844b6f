"""The Python API: stage a scenario's lab, drive its clients step by step, run scenarios.

    from lab import LabSession

    with LabSession("certs") as labs:
        client = labs.stage("scenarios/seed3-smsmp-with-https.toml").client("PC01")
        print(client.step("install", "intranet").outcome)          # ok
        print(labs.run("scenarios/seed3-smsmp-with-https.toml").passed)

A :class:`LabSession` stages scenarios, each on servers of its own (a :class:`StagedLab`), and
runs whole scenarios as ``ibcm-lab run`` does. A :class:`LabClient` is one client of a staged
lab, driven a step at a time. The servers and clients run on a private asyncio event loop in
a background thread, so the API is plain synchronous calls whatever the calling thread's
loop (or lack of one); ``await client.astep(...)`` waits without blocking another loop. The
wiring itself (build, serve, replay, judge) is :mod:`lab.run`'s. The pytest plugin's
fixtures hand out these objects; this module does not import pytest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from lab.clock import Clock
from lab.codes import expect_problem
from lab.pki.build import BuiltPKI
from lab.pki.cache import PKICache
from lab.protocols.network import HostMap, Network
from lab.report.text import evidence_lines, step_summary
from lab.results.logline import LogLine
from lab.results.runs import RunResult
from lab.results.verdicts import StepResult
from lab.run import ClientDriver, run_loaded, staged_lab
from lab.scenario.loader import load_all, load_scenario, load_scenario_text
from lab.scenario.model import Action, ClientSpec, Scenario, StepSpec, Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import Ports, RunningLab

T = TypeVar("T")

CALL_TIMEOUT_S = 300.0
"""How long a call into the lab's event loop may take (nothing sleeps; this only stops a
hung lab from hanging its caller)."""
WIDTH = 100
LOOP_THREAD_NAME = "ibcm-lab-loop"

ScenarioSource = Scenario | str | os.PathLike[str]
"""What a session stages or runs: a Scenario, a path (``str`` without a newline, or a
PathLike), or TOML text (a ``str`` with a newline)."""


# ------------------------------------------------------------------------------------------
# Scenario sources
# ------------------------------------------------------------------------------------------


def _is_text(source: ScenarioSource) -> bool:
    return isinstance(source, str) and "\n" in source


def load_source(source: ScenarioSource) -> Scenario:
    """A Scenario from a Scenario, a path, or TOML text (a ``str`` holding a newline)."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, str):
        if _is_text(source):
            return load_scenario_text(source)
        return load_scenario(source)
    if isinstance(source, os.PathLike):
        return load_scenario(Path(source))
    raise TypeError(f"expected a Scenario, a path or TOML text, got {type(source).__name__}")


def load_sources(sources: Iterable[ScenarioSource]) -> list[Scenario]:
    """Every scenario of ``sources``, in order; a folder gives its ``*.toml`` files."""
    scenarios: list[Scenario] = []
    for source in sources:
        if isinstance(source, str | os.PathLike) and not _is_text(source):
            scenarios += load_all([Path(source)])
        else:
            scenarios.append(load_source(source))
    return scenarios


# ------------------------------------------------------------------------------------------
# A missed expectation
# ------------------------------------------------------------------------------------------


class StepMissed(AssertionError):
    """One or more steps did not give what the scenario expected."""

    def __init__(self, steps: Sequence[StepResult], where: Sequence[str | None] = ()) -> None:
        self.steps = list(steps)
        self.where = list(where) or [None] * len(self.steps)
        super().__init__("\n\n".join(describe_step(s, w)
                                     for s, w in zip(self.steps, self.where, strict=True)))


def _actual(step: StepResult) -> str:
    """``fail CRYPT_E_REVOCATION_OFFLINE 0x80092013``, ``fail HTTP 403.7`` or ``ok``."""
    summary = step_summary(step)
    return f"fail {summary[5:]}" if summary.startswith("FAIL ") else step.outcome


def short_miss(step: StepResult, *, who: bool = True) -> str:
    """One line: ``PC01 step 5: expected X, got fail Y 0x...`` (the short test summary);
    without ``who``: ``expected X, got ...``."""
    got = _actual(step)
    head = f"{step.client} step {step.number}: " if who else ""
    return f"{head}expected {step.expected}, got {got}"


def _wrapped(label: str, text: str) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(text, WIDTH, initial_indent=f"{label:<10}", subsequent_indent=" " * 10,
                         break_on_hyphens=False, break_long_words=False)


def _readable(identifier: str) -> tuple[int, str]:
    """Names first, then hex codes, then decimal numbers (HTTP statuses, signed forms)."""
    if identifier.startswith("0X"):
        return 1, identifier
    return (2 if identifier[:1] in "-0123456789" else 0), identifier


def describe_step(step: StepResult, where: str | None = None) -> str:
    """A step the way a failing item shows it: what was expected and what came, why, the
    fix, the evidence and the log lines to open. ``where`` is ``file:line`` of the step."""
    head = f"{step.client} step {step.number}: {step.title} @ {step.location}"
    lines = [f"{head}  ({where})" if where else head]
    lines.append(f"expected: {step.expected if step.expected is not None else '(nothing)'}")
    lines.append(f"actual:   {_actual(step)}")
    if step.identifiers:
        lines += textwrap.wrap(" ".join(sorted(step.identifiers, key=_readable)), WIDTH,
                               initial_indent=" " * 10 + "identifiers: ",
                               subsequent_indent=" " * 23, break_on_hyphens=False)
    lines += _wrapped("why", step.explanation)
    lines += _wrapped("fix", step.fix)
    evidence = evidence_lines(step, indent=2)
    if evidence:
        lines.append("evidence:")
        lines += evidence
    for note in step.notes:
        lines += _wrapped("note", note)
    for ref in step.log_refs:
        lines.append(f"open      {ref}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# The event loop thread
# ------------------------------------------------------------------------------------------


class _LoopThread:
    """A private asyncio event loop on a background thread: the lab's servers and clients
    live there, whatever the calling thread's loop (or lack of one) is."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=LOOP_THREAD_NAME, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        if self._closed:
            coro.close()
            raise RuntimeError("the lab session's event loop is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the lab did not answer within {timeout:g} s") from None

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; await its result from another event loop."""
        if self._closed:
            coro.close()
            raise RuntimeError("the lab session's event loop is closed")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def close(self) -> None:
        if self._closed:
            return

        async def cancel_the_rest() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_the_rest(), timeout=30)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()


# ------------------------------------------------------------------------------------------
# Clients, staged labs, the session
# ------------------------------------------------------------------------------------------


def _choice(kind: type[Action] | type[Zone], value: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{what}: expected one of {allowed}, got {value!r}") from None


class LabClient:
    """One client of a staged scenario, driven step by step.

    ``step()`` runs one step and returns its :class:`~lab.judge.verdict.StepResult` (``outcome``,
    ``identifiers``, ``explanation``, ``fix``, ``log`` ...). With ``expect`` it also checks the
    result and raises :class:`StepMissed` (an AssertionError) when it is not met. The client
    keeps its state between steps (installed, registered, the site settings it learned). A
    successful ``install`` is followed, before ``step()`` returns, by ccmexec's automatic
    registration and site refresh: they are in the install result's ``followups`` and in
    :attr:`results` (``automatic`` True), and ``expect`` never applies to them.
    """

    def __init__(self, staged: StagedLab, driver: ClientDriver) -> None:
        self.staged = staged
        self.spec = driver.spec
        self.driver = driver
        self.agent = driver.agent

    @property
    def results(self) -> list[StepResult]:
        """Every step this client ran, in order, ccmexec's automatic ones included."""
        return self.driver.results

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log(self) -> list[LogLine]:
        """Every log line the client wrote so far."""
        return [line for r in self.results for line in r.log]

    def _spec(self, action: str, location: str, expect: str | None,
              at: dt.timedelta | None = None, after: dt.timedelta | None = None) -> StepSpec:
        if at is not None and after is not None:
            raise ValueError("at (from the scenario's start) or after (from the client's "
                             "previous step), not both")
        for name, value in (("at", at), ("after", after)):
            if value is not None and (not isinstance(value, dt.timedelta)
                                      or value < dt.timedelta(0)):
                raise ValueError(f"{name}: expected a datetime.timedelta >= 0, got {value!r}")
        if expect is not None:  # as the loader reads it: ok/fail in any case, known names
            if (problem := expect_problem(expect)) is not None:
                raise ValueError(f"expect: {problem}")
            if expect.strip().lower() in ("ok", "fail"):
                expect = expect.strip().lower()
        return StepSpec(_choice(Action, action, "action"), _choice(Zone, location, "location"),
                        expect, at=at, after=after)

    async def _run(self, step: StepSpec) -> StepResult:
        return await self.driver.step(step)

    def _done(self, result: StepResult) -> StepResult:
        __tracebackhide__ = True  # pytest shows the caller's line, not this one
        if result.expected is not None and not result.met:
            raise StepMissed([result])
        return result

    def step(self, action: str, location: str, expect: str | None = None, *,
             at: dt.timedelta | None = None, after: dt.timedelta | None = None) -> StepResult:
        """Run one step (``client.step("install", "intranet")``) and return its result.
        ``at`` (after the scenario's start) or ``after`` (after this client's previous step)
        moves the lab clock to the step's time first; without them the step comes a second
        after the previous one."""
        __tracebackhide__ = True
        spec = self._spec(action, location, expect, at, after)
        return self._done(self.staged.portal.call(self._run(spec)))

    async def astep(self, action: str, location: str, expect: str | None = None, *,
                    at: dt.timedelta | None = None,
                    after: dt.timedelta | None = None) -> StepResult:
        """The same as :meth:`step`, awaitable from async code on another event loop."""
        __tracebackhide__ = True
        spec = self._spec(action, location, expect, at, after)
        return self._done(await self.staged.portal.acall(self._run(spec)))


@dataclasses.dataclass
class StagedLab:
    """A scenario staged on its own running servers (see :class:`LabSession`)."""

    scenario: Scenario
    pki: BuiltPKI
    """The built PKI: CAs, the MP's certificate, client certificates, CRL publications."""
    running: RunningLab
    """The started servers (MP HTTPS and HTTP, CDP/AIA)."""
    deployment: Deployment
    network: Network
    clock: Clock
    scratch: Path
    """A private temporary folder, removed at close."""
    portal: _LoopThread = dataclasses.field(repr=False)
    _stack: contextlib.AsyncExitStack = dataclasses.field(repr=False)
    _drivers: list[ClientDriver] = dataclasses.field(default_factory=list, repr=False)
    closed: bool = False

    @property
    def hosts(self) -> HostMap:
        """``(host, port)`` -> the loopback port of the server playing that host."""
        return self.running.hosts

    @property
    def ports(self) -> Ports:
        return self.running.ports

    def client(self, name: str | None = None) -> LabClient:
        """A fresh, step-drivable client: the ``[[client]]`` called ``name`` (default: the
        first). Each call gives a new machine in its initial state; the scenario's own steps
        are not run."""
        if self.closed:
            raise RuntimeError("this lab is closed")
        specs = self.scenario.clients
        spec = specs[0] if name is None else next(
            (c for c in specs if c.name.lower() == name.lower()), None)
        if spec is None:
            known = ", ".join(c.name for c in specs)
            raise ValueError(f"the scenario has no client {name!r} (it has {known})")
        return self.portal.call(self._client(spec))

    async def _client(self, spec: ClientSpec) -> LabClient:
        driver = ClientDriver(self.running, self.deployment, spec, self.scratch)
        self._drivers.append(driver)
        return LabClient(self, driver)

    async def _aclose(self) -> None:
        try:
            for driver in self._drivers:
                await driver.aclose()
            await self._stack.aclose()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def close(self) -> None:
        """Stop the servers and remove the scratch folder (the session does it for you)."""
        if not self.closed:
            self.closed = True
            self.portal.call(self._aclose())


class LabSession:
    """Stages scenarios on running labs, each on its own servers; closes them all at the end.

    ``labs.stage(source)`` (or ``labs(source)``) gives a :class:`StagedLab` whose clients a
    caller drives step by step; ``labs.run(*sources)`` runs whole scenarios and returns a
    :class:`~lab.run.RunResult`. Keys come from the ``certs`` cache folder::

        with LabSession("certs") as labs:
            client = labs("my-site.toml").client("PC01")
            print(client.step("install", "intranet").outcome)
    """

    def __init__(self, certs: str | os.PathLike[str]) -> None:
        self.cache = PKICache(Path(certs))
        self.labs: list[StagedLab] = []
        self._portal: _LoopThread | None = None
        self.closed = False

    def __call__(self, source: ScenarioSource) -> StagedLab:
        return self.stage(source)

    def _loop(self) -> _LoopThread:
        if self._portal is None:
            self._portal = _LoopThread()
        return self._portal

    def stage(self, source: ScenarioSource) -> StagedLab:
        """Start servers and stage ``source`` (a Scenario, a path, or TOML text) on them."""
        if self.closed:
            raise RuntimeError("this lab session is closed")
        scenario = load_source(source)
        portal = self._loop()
        staged = portal.call(self._start(scenario, portal))
        self.labs.append(staged)
        return staged

    async def _start(self, scenario: Scenario, portal: _LoopThread) -> StagedLab:
        scratch = Path(tempfile.mkdtemp(prefix="ibcm-lab-"))
        stack = contextlib.AsyncExitStack()
        try:
            running, deployment = await stack.enter_async_context(
                staged_lab(scenario, self.cache, scratch))
        except BaseException:  # whatever had started is already stopped
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return StagedLab(scenario=scenario, pki=deployment.pki, running=running,
                         deployment=deployment, network=deployment.network,
                         clock=deployment.clock, scratch=scratch, portal=portal, _stack=stack)

    def run(self, *sources: ScenarioSource) -> RunResult:
        """Run whole scenarios (every client and step, as ``ibcm-lab run`` does) in one lab
        of their own. A source is a Scenario, TOML text, or a path (a folder gives its
        ``*.toml`` files); all are loaded before anything runs."""
        if self.closed:
            raise RuntimeError("this lab session is closed")
        scenarios = load_sources(sources)
        return self._loop().call(run_loaded(scenarios, cache=self.cache))

    def close(self) -> None:
        """Stop every lab's servers, remove their folders and stop the event loop."""
        if self.closed:
            return
        self.closed = True
        errors: list[BaseException] = []
        try:
            for staged in reversed(self.labs):
                try:
                    staged.close()
                except Exception as e:  # close the others all the same
                    errors.append(e)
        finally:
            if self._portal is not None:
                self._portal.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> LabSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = [
    "LabClient",
    "LabSession",
    "ScenarioSource",
    "StagedLab",
    "StepMissed",
    "describe_step",
    "load_source",
    "load_sources",
    "short_miss",
]
