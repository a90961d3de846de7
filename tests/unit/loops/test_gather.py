"""``gather_bounded``: one pass's work, bounded, and never left running behind the pass."""

from __future__ import annotations

import asyncio

import pytest

from batchd import loops
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


class Worker:
    """A loop whose one pass moves for ``moving_s`` (reporting progress), then hangs."""

    name = "worker"

    def __init__(self, moving_s: float) -> None:
        self.moving_s = moving_s
        self.release = asyncio.Event()

    async def run_once(self) -> int:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.moving_s
        while loop.time() < until:
            await gather_bounded([1], _nothing, limit=1)  # one step done: progress
            await asyncio.sleep(0.01)
        await self.release.wait()
        return 1

    async def wait(self) -> None:
        await asyncio.sleep(3600)


async def _nothing(_item: int) -> None:
    return None


async def test_a_pass_beats_while_it_moves_and_stops_once_it_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "BEAT_EVERY_S", 0.01)
    loop = asyncio.get_running_loop()
    worker, beats = Worker(moving_s=0.4), []
    stop = asyncio.Event()
    began = loop.time()

    def beat(_name: str) -> None:
        beats.append(loop.time() - began)

    task = asyncio.create_task(loops.run_loop(worker, stop, beat, max_pass_s=60, stall_s=0.1))
    await asyncio.sleep(0.9)
    try:
        assert beats and beats[-1] > 0.35  # it beat for as long as it moved (past stall_s)
        assert beats[-1] < 0.4 + 0.1 + 0.05  # and stopped within stall_s of its last progress
    finally:
        stop.set()
        worker.release.set()
        await asyncio.wait_for(task, timeout=5)
