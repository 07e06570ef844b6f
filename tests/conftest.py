"""Shared fixtures: one certificate cache for the whole test session, and a running lab."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from lab.pki.cache import PKICache
from lab.servers.harness import RunningLab, start_lab

# No example may fail for its speed: a busy machine is slow, not wrong (issue 17).
settings.register_profile("ibcm-lab", deadline=None)
settings.load_profile("ibcm-lab")

# Tests send Ctrl-C (SIGINT) to the lab's processes, which must receive it as a terminal's
# foreground job does. A pytest started as a background job of a non-interactive shell (CI
# scripts, `pytest &`) inherits SIGINT ignored and would pass that on to every child: give the
# children the default disposition back (a Python-level handler resets to it at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificate cache for the whole session: keys are generated once."""
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def cache(certs_dir: Path) -> PKICache:
    """The session's certificate cache, opened once per test module."""
    return PKICache(certs_dir)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    """The lab's servers on loopback for one test, stopped after it."""
    async with start_lab(scratch=str(tmp_path)) as running:
        yield running


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (the fuzzers' long runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only with ``--run-slow``: the default run stays cheap."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
