"""The pytest plugin: scenario files are tests, and fixtures drive a lab from Python.

Registered through the ``pytest11`` entry point ``ibcm_lab``, so installing ibcm-lab is
enough (no ``conftest.py``); ``-p no:ibcm_lab`` switches it off. See docs/pytest-plugin.md.

Collection. Every ``*.toml`` file whose top level has a ``[scenario]`` table is an ibcm-lab
scenario (other TOML files, ``pyproject.toml`` among them, are left alone). Each file is run
once, in one lab, when its first item is set up; each item then reports its own part:

    path/to/file.toml::PC01::5-inventory@internet      --ibcm-granularity=step (default)
    path/to/file.toml::<scenario name>                  --ibcm-granularity=scenario

A missed expectation is reported as the expected and the actual identifiers, the
explanation, the fix, the evidence and (with ``--ibcm-logs DIR``) the log file and line to
open, not as a Python traceback. Unusable scenario input is a collection error with the
loader's one line (``file:line: key: message``).

Fixtures. ``ibcm_lab`` stages a scenario (a file, a :class:`~lab.scenario.model.Scenario`
or TOML text) on its own running servers; ``ibcm_client`` gives one of its clients to drive
step by step. They are plain (synchronous) fixtures: the servers run on a private event loop
in a background thread, so they work in a project that has no asyncio plugin, and async
tests can ``await client.astep(...)``. Servers, sessions and temporary folders are gone when
the test ends, whether it passed or failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import textwrap
import threading
import tomllib
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr

from lab.clock import Clock
from lab.errors import LabError, ScenarioError
from lab.logs.writer import write_logs
from lab.pki.build import BuiltPKI
from lab.pki.cache import PKICache
from lab.protocols.network import HostMap, Network
from lab.report.text import evidence_lines, step_summary
from lab.results.logline import LogLine
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import ClientDriver, run_loaded, stage_scenario
from lab.scenario.loader import load_scenario, load_scenario_text
from lab.scenario.model import Action, ClientSpec, Scenario, StepSpec, Zone
from lab.servers.deployment import Deployment
from lab.servers.harness import Ports, RunningLab, start_lab

if TYPE_CHECKING:
    from _pytest._io import TerminalWriter

T = TypeVar("T")

GRANULARITIES = ("step", "scenario")
CERTS_ENV = "IBCM_LAB_CERTS"
CACHE_NAME = "ibcm-lab-certs"
"""The certificate cache's folder under pytest's cache directory (``.pytest_cache/d/``)."""
CALL_TIMEOUT_S = 300.0
"""How long a call into the lab's event loop may take (nothing sleeps; this only stops a
hung lab from hanging the test session)."""
WIDTH = 100

ScenarioSource = Scenario | str | os.PathLike[str]
"""What the fixtures stage: a Scenario, a path (``str`` without a newline, or a PathLike),
or TOML text (a ``str`` with a newline)."""


# ------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ibcm-lab", "ibcm-lab scenarios (see docs/pytest-plugin.md)")
    group.addoption("--ibcm-granularity", choices=GRANULARITIES, default=None,
                    help="one test item per client step (step, the default) or per "
                         "scenario file (scenario). ini: ibcm_granularity")
    group.addoption("--ibcm-certs", metavar="DIR", default=None,
                    help="the certificate and key cache (default: $IBCM_LAB_CERTS, else "
                         "ibcm-lab-certs under pytest's cache directory, else a temporary "
                         "folder for the session). ini: ibcm_certs")
    group.addoption("--ibcm-logs", metavar="DIR", default=None,
                    help="write every scenario's logs under DIR (as 'ibcm-lab run --out'); "
                         "failures then name the log file and line to open. ini: ibcm_logs")
    parser.addini("ibcm_granularity", "ibcm-lab: 'step' (default) or 'scenario'",
                  default="step")
    parser.addini("ibcm_certs", "ibcm-lab: the certificate and key cache folder", default="")
    parser.addini("ibcm_logs", "ibcm-lab: write the scenarios' logs under this folder",
                  default="")
    parser.addini("ibcm_collect", "ibcm-lab: collect scenario *.toml files as tests "
                  "(default true; false keeps only the fixtures)", type="bool", default=True)


_CERTS = pytest.StashKey[Path]()
_LOG_NAMES = pytest.StashKey[dict[str, Path]]()


def _ini_path(config: pytest.Config, name: str) -> Path | None:
    """An ini path option, relative to the ini file's folder (or the rootdir)."""
    value = str(config.getini(name) or "").strip()
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return base / os.path.expanduser(value)


def _cli_path(config: pytest.Config, name: str) -> Path | None:
    value: str | None = config.getoption(name)
    if not value:
        return None
    return config.invocation_params.dir / os.path.expanduser(value)


def granularity(config: pytest.Config) -> Literal["step", "scenario"]:
    """The session's item granularity: the command line, else the ini option, else step."""
    value = config.getoption("ibcm_granularity") or str(config.getini("ibcm_granularity"))
    value = value.strip().lower() or "step"
    if value == "scenario":
        return "scenario"
    if value == "step":
        return "step"
    raise pytest.UsageError(
        f"ibcm_granularity: expected one of 'step', 'scenario', got {value!r}")


def logs_dir(config: pytest.Config) -> Path | None:
    """Where the scenarios' logs go (``--ibcm-logs``, else ``ibcm_logs``), or None."""
    return _cli_path(config, "ibcm_logs") or _ini_path(config, "ibcm_logs")


def certs_dir(config: pytest.Config) -> Path:
    """The session's certificate cache, decided once: ``--ibcm-certs``, ``ibcm_certs``,
    ``$IBCM_LAB_CERTS``, pytest's cache directory, else a temporary folder removed at the end
    of the session. Keys cost about 100 ms each, so every scenario of the session reuses
    them."""
    if _CERTS in config.stash:
        return config.stash[_CERTS]
    chosen = _cli_path(config, "ibcm_certs") or _ini_path(config, "ibcm_certs")
    if chosen is None and os.environ.get(CERTS_ENV):
        chosen = Path(os.path.expanduser(os.environ[CERTS_ENV]))
    if chosen is None:
        cache = getattr(config, "cache", None)
        if cache is not None:
            with contextlib.suppress(OSError):
                chosen = Path(cache.mkdir(CACHE_NAME))
    if chosen is None:
        temp = Path(tempfile.mkdtemp(prefix="ibcm-lab-certs-"))
        config.add_cleanup(lambda: shutil.rmtree(temp, ignore_errors=True))
        chosen = temp
    config.stash[_CERTS] = chosen
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    granularity(config)  # a bad ini value is a usage error before anything runs
    out = logs_dir(config)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise pytest.UsageError(
                f"--ibcm-logs: cannot create {out}: {e.strerror or e}") from None
    config.stash[_LOG_NAMES] = {}


# ------------------------------------------------------------------------------------------
# Collection
# ------------------------------------------------------------------------------------------

_SCENARIO_HEADER = re.compile(r"^\s*\[\s*scenario\s*\]\s*(#.*)?$", re.MULTILINE)
_CLIENT_HEADER = re.compile(r"^\s*\[\[\s*client\s*\]\]")
_STEP_HEADER = re.compile(r"^\s*\[\[\s*client\s*\.\s*step\s*\]\]")


def is_scenario_file(path: Path) -> bool:
    """Whether ``path`` is an ibcm-lab scenario: a ``*.toml`` file whose top level has a
    ``[scenario]`` table. A file that is not valid TOML counts when a line of it is the
    ``[scenario]`` header (so its syntax error is reported, not silently skipped)."""
    if path.suffix.lower() != ".toml":
        return False
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    text = raw.decode("utf-8-sig", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return _SCENARIO_HEADER.search(text) is not None
    return isinstance(data.get("scenario"), dict)


def step_lines(text: str) -> dict[tuple[int, int], int]:
    """``(client index, step index)`` -> the 1-based line of that ``[[client.step]]``."""
    lines: dict[tuple[int, int], int] = {}
    client, step = -1, -1
    for number, line in enumerate(text.splitlines(), start=1):
        if _CLIENT_HEADER.match(line):
            client, step = client + 1, -1
        elif _STEP_HEADER.match(line) and client >= 0:
            step += 1
            lines[(client, step)] = number
    return lines


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if file_path.suffix.lower() != ".toml" or not parent.config.getini("ibcm_collect"):
        return None
    if not is_scenario_file(file_path):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


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
    head = f"{step.client} step {step.index + 1}: " if who else ""
    return f"{head}expected {step.expected}, got {got}"


class MissedRepr(TerminalRepr):
    """How a missed step shows in pytest's report: the text of :func:`describe_step`, and a
    one-line message for the short test summary (``-rf``) and JUnit XML."""

    def __init__(self, text: str, path: str, lineno: int, message: str) -> None:
        self.text = text
        self.reprcrash = ReprFileLocation(path, lineno, message)

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.splitlines():
            tw.line(line, red=line.startswith("actual:"), bold=line.startswith("expected:"))


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
    head = f"{step.client} step {step.index + 1}: {step.action} @ {step.location}"
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


class _LoopThread:
    """A private asyncio event loop on a background thread: the lab's servers and clients
    live there, whatever the calling thread's loop (or lack of one) is."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ibcm-lab-loop", daemon=True)
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
            raise RuntimeError("the ibcm-lab fixture's event loop is closed")
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
            raise RuntimeError("the ibcm-lab fixture's event loop is closed")
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

    def __enter__(self) -> _LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScenarioFile(pytest.File):
    """One scenario file: loaded at collection, run once when its first item is set up."""

    scenario: Scenario
    result: ScenarioResult | None = None

    def _relative(self) -> str:
        try:
            return os.path.relpath(self.path, self.config.invocation_params.dir)
        except ValueError:  # another drive (Windows)
            return str(self.path)

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        try:
            self.scenario = load_scenario(self.path)
            text = self.path.read_bytes().decode("utf-8-sig")
        except ScenarioError as e:
            e.file = self._relative()
            raise self.CollectError(str(e)) from None
        except OSError as e:
            raise self.CollectError(f"{self._relative()}: cannot be read: {e.strerror}") from None
        self.lines = step_lines(text)
        if granularity(self.config) == "scenario":
            yield ScenarioItem.from_parent(self, name=self.scenario.name)
            return
        for ci, client in enumerate(self.scenario.clients):
            yield ClientNode.from_parent(self, name=client.name, client_index=ci)

    def where(self, client: int, step: int) -> str:
        line = self.lines.get((client, step))
        return f"{self._relative()}:{line}" if line else self._relative()

    def setup(self) -> None:
        certs = certs_dir(self.config)
        problem = None
        try:
            with _LoopThread() as loop:
                run = loop.call(run_loaded([self.scenario], certs=certs))
            out = logs_dir(self.config)
            if out is not None:
                write_logs(self._for_logs(run), out)
        except LabError as e:
            # Unusable input or environment (a cache folder that cannot be written, a log
            # folder that cannot be created): one line, as the command line says it.
            problem = f"{self._relative()}: {e}"
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.result = run.scenarios[0]

    def _for_logs(self, run: RunResult) -> RunResult:
        """``run`` with the scenario renamed when another file of the session already wrote
        logs under the same name (``name-2``, ...), as ``ibcm-lab run`` does."""
        used = self.config.stash[_LOG_NAMES]
        base = self.scenario.name
        name, n = base, 1
        while used.get(name.lower(), self.path) != self.path:
            n += 1
            name = f"{base}-{n}"
        used[name.lower()] = self.path
        if name == base:
            return run
        result = run.scenarios[0]
        renamed = dataclasses.replace(result,
                                      scenario=dataclasses.replace(result.scenario, name=name))
        return RunResult([renamed], run.wall_ms)

    def teardown(self) -> None:
        self.result = None


class ClientNode(pytest.Collector):
    """One ``[[client]]`` of a scenario file: its steps are the items."""

    def __init__(self, *, client_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_index = client_index

    def collect(self) -> Iterator[pytest.Item]:
        file = self.getparent(ScenarioFile)
        if file is None:  # pragma: no cover - built only under a ScenarioFile
            return
        spec = file.scenario.clients[self.client_index]
        for si, step in enumerate(spec.steps):
            yield StepItem.from_parent(
                self, name=f"{si + 1}-{step.action.value}@{step.location.value}",
                client_index=self.client_index, step_index=si)


class _ScenarioItemBase(pytest.Item):
    def file(self) -> ScenarioFile:
        file = self.getparent(ScenarioFile)
        if file is None:  # pragma: no cover - built only under a ScenarioFile
            raise RuntimeError("an ibcm-lab item outside a scenario file")
        return file

    def result(self) -> ScenarioResult:
        result = self.file().result
        if result is None:  # pragma: no cover - the file's setup runs first
            raise RuntimeError("the scenario file has not run")
        return result

    def check(self, picked: Sequence[tuple[int, int]]) -> None:
        result = self.result()
        missed = [(ci, si) for ci, si in picked if not result.clients[ci].steps[si].met]
        if missed:
            file = self.file()
            raise StepMissed([result.clients[ci].steps[si] for ci, si in missed],
                             [file.where(ci, si) for ci, si in missed])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | TerminalRepr:
        missed = excinfo.value
        if not isinstance(missed, StepMissed):
            return super().repr_failure(excinfo, style)
        text = str(missed)
        if logs_dir(self.config) is None:
            text += "\n(run with --ibcm-logs DIR to write the logs and see the line to open)"
        where = missed.where[0] or str(self.path)
        path, _, line = where.rpartition(":")
        if not line.isdigit():
            path, line = where, "0"
        return MissedRepr(text, path, int(line), "; ".join(
            short_miss(s, who=not isinstance(self, StepItem)) for s in missed.steps))


class StepItem(_ScenarioItemBase):
    """One step of one client (``file.toml::PC01::5-inventory@internet``)."""

    def __init__(self, *, client_index: int, step_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_index = client_index
        self.step_index = step_index
        spec = self.file().scenario.clients[client_index].steps[step_index]
        self.expected = spec.expect

    def runtest(self) -> None:
        self.check([(self.client_index, self.step_index)])

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.file().lines.get((self.client_index, self.step_index))
        client = self.file().scenario.clients[self.client_index].name
        return self.path, (line - 1 if line else None), f"{client}::{self.name}"


class ScenarioItem(_ScenarioItemBase):
    """A whole scenario file as one item (``--ibcm-granularity=scenario``)."""

    def runtest(self) -> None:
        scenario = self.file().scenario
        self.check([(ci, si) for ci, c in enumerate(scenario.clients)
                    for si in range(len(c.steps))])

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, self.name


# ------------------------------------------------------------------------------------------
# Fixtures: a running lab and step-drivable clients
# ------------------------------------------------------------------------------------------



def load_source(source: ScenarioSource) -> Scenario:
    """A Scenario from a Scenario, a path, or TOML text (a ``str`` holding a newline)."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, str):
        if "\n" in source:
            return load_scenario_text(source)
        return load_scenario(source)
    if isinstance(source, os.PathLike):
        return load_scenario(Path(source))
    raise TypeError(f"expected a Scenario, a path or TOML text, got {type(source).__name__}")


def _choice(kind: type[Action] | type[Zone], value: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{what}: expected one of {allowed}, got {value!r}") from None


class LabClient:
    """One client of a staged scenario, driven step by step.

    ``step()`` runs one step and returns its :class:`~lab.results.verdicts.StepResult` (``outcome``,
    ``identifiers``, ``explanation``, ``fix``, ``log`` ...). With ``expect`` it also checks the
    result and raises :class:`StepMissed` (an AssertionError) when it is not met. The client
    keeps its state between steps (installed, registered, the site settings it learned).
    """

    def __init__(self, staged: StagedLab, driver: ClientDriver) -> None:
        self.staged = staged
        self.spec = driver.spec
        self.driver = driver
        self.agent = driver.agent

    @property
    def results(self) -> list[StepResult]:
        """Every step this client ran, in order."""
        return self.driver.results

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log(self) -> list[LogLine]:
        """Every log line the client wrote so far."""
        return [line for r in self.results for line in r.log]

    def _spec(self, action: str, location: str, expect: str | None) -> StepSpec:
        return StepSpec(_choice(Action, action, "action"), _choice(Zone, location, "location"),
                        expect)

    async def _run(self, step: StepSpec) -> StepResult:
        return await self.driver.step(step)

    def _done(self, result: StepResult) -> StepResult:
        __tracebackhide__ = True
        if result.expected is not None and not result.met:
            raise StepMissed([result])
        return result

    def step(self, action: str, location: str, expect: str | None = None) -> StepResult:
        """Run one step (``client.step("install", "intranet")``) and return its result."""
        __tracebackhide__ = True
        spec = self._spec(action, location, expect)
        return self._done(self.staged.portal.call(self._run(spec)))

    async def astep(self, action: str, location: str, expect: str | None = None) -> StepResult:
        """The same as :meth:`step`, awaitable from an async test."""
        __tracebackhide__ = True
        spec = self._spec(action, location, expect)
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
        """Stop the servers and remove the scratch folder (the fixture does it for you)."""
        if not self.closed:
            self.closed = True
            self.portal.call(self._aclose())


class LabSession:
    """Stages scenarios on running labs, each on its own servers; closes them all at the end.

    The ``ibcm_lab`` fixture is one of these: ``staged = ibcm_lab("my-site.toml")``. Outside
    pytest::

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

    def stage(self, source: ScenarioSource) -> StagedLab:
        """Start servers and stage ``source`` (a Scenario, a path, or TOML text) on them."""
        if self.closed:
            raise RuntimeError("this lab session is closed")
        scenario = load_source(source)
        if self._portal is None:
            self._portal = _LoopThread()
        staged = self._portal.call(self._start(scenario, self._portal))
        self.labs.append(staged)
        return staged

    async def _start(self, scenario: Scenario, portal: _LoopThread) -> StagedLab:
        scratch = Path(tempfile.mkdtemp(prefix="ibcm-lab-"))
        stack = contextlib.AsyncExitStack()
        try:
            running = await stack.enter_async_context(start_lab(scratch=str(scratch)))
            deployment = await stage_scenario(running, scenario, self.cache)
        except BaseException:
            try:
                await stack.aclose()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        return StagedLab(scenario=scenario, pki=deployment.pki, running=running,
                         deployment=deployment, network=deployment.network,
                         clock=deployment.clock, scratch=scratch, portal=portal, _stack=stack)

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


class ClientFactory(Protocol):
    """The ``ibcm_client`` fixture: ``ibcm_client(source, name=None) -> LabClient``."""

    def __call__(self, source: ScenarioSource, name: str | None = None) -> LabClient: ...


@pytest.fixture(scope="session")
def ibcm_certs(pytestconfig: pytest.Config) -> Path:
    """The session's certificate and key cache (see :func:`certs_dir`). Override it in a
    conftest.py to share another cache."""
    return certs_dir(pytestconfig)


@pytest.fixture
def ibcm_lab(ibcm_certs: Path) -> Iterator[LabSession]:
    """Stage scenarios on running labs: ``staged = ibcm_lab(path | Scenario | toml_text)``.

    ``staged.pki``, ``staged.hosts``, ``staged.ports``, ``staged.client(name)``. Every lab
    is stopped and its folder removed after the test, passed or failed.
    """
    with LabSession(ibcm_certs) as session:
        yield session


@pytest.fixture
def ibcm_client(ibcm_lab: LabSession) -> ClientFactory:
    """A step-drivable client: ``client = ibcm_client(source, "PC01")``, then
    ``client.step("install", "intranet")`` (``await client.astep(...)`` in async tests)."""

    def make(source: ScenarioSource, name: str | None = None) -> LabClient:
        return ibcm_lab(source).client(name)

    return make


__all__ = [
    "ClientFactory",
    "LabClient",
    "LabSession",
    "ScenarioFile",
    "ScenarioItem",
    "ScenarioSource",
    "StagedLab",
    "StepItem",
    "StepMissed",
    "certs_dir",
    "describe_step",
    "granularity",
    "ibcm_certs",
    "ibcm_client",
    "ibcm_lab",
    "is_scenario_file",
    "load_source",
    "logs_dir",
    "step_lines",
]
