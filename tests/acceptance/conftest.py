"""Fixtures of the acceptance tier: ``harness`` (an emulator process, the real ``batchd run``
process, a notify socket, the daemon's store), torn down even when a test fails."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.acceptance.harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        await h.close()


def soak_enabled() -> bool:
    return os.environ.get("BATCHD_SOAK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.slow`` tests under tests/acceptance run only with BATCHD_SOAK=1."""
    if soak_enabled():
        return
    skip = pytest.mark.skip(reason="soak variant: set BATCHD_SOAK=1 to run")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
