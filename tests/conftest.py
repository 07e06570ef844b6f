"""Shared fixtures: one certificate cache for the whole test session, and a running lab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from lab.pki.cache import PKICache
from lab.servers.harness import RunningLab, start_lab

# No example may fail for its speed: a busy machine is slow, not wrong (issue 17).
settings.register_profile("ibcm-lab", deadline=None)
settings.load_profile("ibcm-lab")


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
