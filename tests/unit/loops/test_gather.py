"""``gather_bounded``: one pass's work, bounded, and never left running behind the pass."""

from __future__ import annotations

import asyncio

import pytest

from batchd.loops import gather_bounded


async def test_runs_every_item_at_most_limit_at_a_time() -> None:
    running, peak, done = 0, 0, []

    async def step(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(item)

    await gather_bounded(range(10), step, limit=3)
    assert sorted(done) == list(range(10))
    assert peak == 3


async def test_a_failure_is_raised_only_after_every_other_step_ended() -> None:
    finished: list[str] = []

    async def step(item: str) -> None:
        if item == "bad":
            raise OSError("boom")
        await asyncio.sleep(0.05)  # e.g. a create still in flight
        finished.append(item)

    with pytest.raises(OSError, match="boom"):
        await gather_bounded(["bad", "slow-1", "slow-2"], step, limit=3)
    assert sorted(finished) == ["slow-1", "slow-2"]
