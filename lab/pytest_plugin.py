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

Fixtures. ``ibcm_lab`` is a :class:`lab.session.LabSession`: it stages a scenario (a file, a
:class:`~lab.scenario.model.Scenario` or TOML text) on its own running servers;
``ibcm_client`` gives one of its clients to drive step by step. They are plain (synchronous)
fixtures (the session runs the lab on a private event loop in a background thread), so they
work in a project that has no asyncio plugin, and async tests can ``await
client.astep(...)``. Servers, sessions and temporary folders are gone when the test ends,
whether it passed or failed.

Everything here is hooks, nodes and fixtures over :mod:`lab.session` (which runs the files,
through :mod:`lab.run`) and uses only pytest's public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest

from lab.errors import LabError, ScenarioError
from lab.files import make_folders
from lab.logs.writer import write_logs
from lab.results.runs import RunResult, ScenarioResult
from lab.scenario.loader import load_scenario
from lab.scenario.model import Scenario
from lab.session import LabClient, LabSession, ScenarioSource, StepMissed, short_miss

GRANULARITIES = ("step", "scenario")
CERTS_ENV = "IBCM_LAB_CERTS"
CACHE_NAME = "ibcm-lab-certs"
"""The certificate cache's folder under pytest's cache directory (``.pytest_cache/d/``)."""


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
            make_folders(out)
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


class _Writer(Protocol):
    """What :meth:`MissedRepr.toterminal` needs of pytest's terminal writer."""

    def line(self, s: str = "", **markup: bool) -> None: ...


@dataclasses.dataclass(frozen=True)
class _Crash:
    """A failure's place and one-line message: what pytest reads as ``reprcrash`` (the short
    test summary, ``--tb=line`` and the JUnit XML ``message``)."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        first = self.message.partition("\n")[0]
        return f"{self.path}:{self.lineno}: {first}"


class MissedRepr:
    """How a missed step shows in pytest's report: the text of
    :func:`lab.session.describe_step`, and a one-line message for the short test summary
    (``-rf``) and JUnit XML. pytest takes any object with ``toterminal`` and ``reprcrash`` as
    a failure's representation."""

    def __init__(self, text: str, path: str, lineno: int, message: str) -> None:
        self.text = text
        self.reprcrash = _Crash(path, lineno, message)

    def toterminal(self, tw: _Writer) -> None:
        for line in self.text.splitlines():
            tw.line(line, red=line.startswith("actual:"), bold=line.startswith("expected:"))

    def __str__(self) -> str:
        return "\n".join(self.text.splitlines()).strip()


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
            with LabSession(certs) as labs:
                run = labs.run(self.scenario)
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
        own = [c.scenario_steps for c in result.clients]  # automatic steps have no expect
        missed = [(ci, si) for ci, si in picked if not own[ci][si].met]
        if missed:
            file = self.file()
            raise StepMissed([own[ci][si] for ci, si in missed],
                             [file.where(ci, si) for ci, si in missed])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:  # str, pytest's own repr, or a MissedRepr
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
# Fixtures: lab sessions (lab.session) for tests in Python
# ------------------------------------------------------------------------------------------


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
    """A :class:`~lab.session.LabSession`: ``staged = ibcm_lab(path | Scenario | toml_text)``.

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
    "ClientNode",
    "MissedRepr",
    "ScenarioFile",
    "ScenarioItem",
    "StepItem",
    "certs_dir",
    "granularity",
    "ibcm_certs",
    "ibcm_client",
    "ibcm_lab",
    "is_scenario_file",
    "logs_dir",
    "step_lines",
]
# The Python API (LabSession, StagedLab, LabClient, StepMissed) lives in lab.session.
