"""Shared fixtures: one certificate cache for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificate cache for the whole session: keys are generated once."""
    return tmp_path_factory.mktemp("certs")
