"""While a provider refuses the key (auth pause), the loops sleep until the pause ends or new
work arrives: no busy loop (issue 13, item 6). Passes are counted over a real period while the
manual clock stands still (or moves only as the test moves it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from batchd.errors import AuthError
from batchd.loops import Loop, run_loop
from batchd.models import JobState
from tests.unit.loops.conftest import World, request_lines


class Counted:
    """A loop whose passes are counted (its ``wait`` is the real one)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.name = loop.name
        self.passes = 0

    async def run_once(self) -> int:
        self.passes += 1
        return await self.loop.run_once()

    async def wait(self) -> None:
        await self.loop.wait()


async def run_for(loop: Counted, seconds: float) -> int:
    stop = asyncio.Event()
    task = asyncio.create_task(run_loop(loop, stop, lambda _name: None))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    return loop.passes


@contextlib.asynccontextmanager
async def clock_ticking(world: World, step_s: float = 0.02) -> AsyncIterator[None]:
    """The manual clock follows real time while the block runs."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(step_s)
            world.clock.advance(step_s)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def refuse_the_key(world: World, op: str) -> None:
    refusals = [AuthError("401 Unauthorized", status=401) for _ in range(99)]
    world.provider.fail_before[op].extend(refusals)


async def test_the_submitter_sleeps_through_an_auth_pause(world: World) -> None:
    await world.accept("a.jsonl", request_lines(2))
    refuse_the_key(world, "upload_file")
    await world.submitter.run_once()  # refused: the provider is paused for 300 s
    assert world.gate.paused_until
    counted = Counted(world.submitter)
    assert await run_for(counted, 0.6) == 1  # one pass, then asleep (was: one every 50 ms)
    assert world.provider.calls["upload_file"] == 1


async def test_the_submitter_wakes_when_the_pause_ends(world: World) -> None:
    await world.accept("a.jsonl", request_lines(2))
    world.gate.auth_pause_s = 0.4
    world.provider.fail_before["upload_file"].append(AuthError("401 Unauthorized", status=401))
    await world.submitter.run_once()
    counted = Counted(world.submitter)
    async with clock_ticking(world):
        passes = await run_for(counted, 1.0)
    (job,) = [j for j in await world.store.list_jobs()]
    assert job.state is JobState.PENDING  # created once the pause was over
    # The pass in the pause, the one at its end, and on a loaded machine a few more as real time
    # runs late; a loop that ignores the pause makes about 20 (one every 50 ms).
    assert passes <= 6


async def test_new_work_wakes_the_submitter(world: World) -> None:
    await world.accept("a.jsonl", request_lines(2))
    refuse_the_key(world, "upload_file")
    await world.submitter.run_once()
    counted = Counted(world.submitter)
    stop = asyncio.Event()
    task = asyncio.create_task(run_loop(counted, stop, lambda _name: None))
    await asyncio.sleep(0.2)
    assert counted.passes == 1
    world.submitter.wake()  # what intake does when it accepts a file
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert counted.passes == 2


async def test_the_tracker_sleeps_through_an_auth_pause(world: World) -> None:
    await world.accept("a.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.store.list_jobs()
    assert job.state is JobState.PENDING
    world.clock.advance(60)  # the first poll is due
    refuse_the_key(world, "get_job")
    await world.tracker.run_once()
    assert world.gate.paused_until
    counted = Counted(world.tracker)
    assert await run_for(counted, 0.6) == 1  # the job is due, its provider paused: asleep


async def finished_job(world: World) -> str:
    """A submission whose one job the provider finished and the tracker saw end."""
    sub = await world.accept("a.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.store.jobs_for_submission(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    return sub.id


async def test_a_refused_download_pauses_the_provider_once(world: World) -> None:
    sub_id = await finished_job(world)
    refuse_the_key(world, "download_file")
    await world.collector.run_once()
    assert world.gate.paused_until["fake"] > world.clock.now()
    assert (await world.events()).count("provider.auth_failed") == 1
    (job,) = await world.store.jobs_for_submission(sub_id)
    assert job.next_attempt_at == world.gate.paused_until["fake"]  # waits out the pause
    assert job.attempts == 0  # the key, not the job: no download attempt is used up
    world.clock.advance(1)
    assert await world.collector.run_once() == 0  # paused: not even tried
    assert world.provider.calls["download_file"] == 1
    assert (await world.events()).count("provider.auth_failed") == 1


async def test_the_collector_sleeps_through_an_auth_pause(world: World) -> None:
    await finished_job(world)
    refuse_the_key(world, "download_file")
    await world.collector.run_once()
    counted = Counted(world.collector)
    assert await run_for(counted, 0.6) == 1  # one pass, then asleep until the pause ends
    assert world.provider.calls["download_file"] == 1


async def test_the_collector_waits_out_a_pause_another_loop_started(world: World) -> None:
    await finished_job(world)  # its results are due for download now
    world.gate.pause_for_auth("fake", world.clock.now(), "401 Unauthorized")  # the submitter's
    counted = Counted(world.collector)
    assert await run_for(counted, 0.6) == 1  # a due job of a paused provider: asleep
    assert world.provider.calls["download_file"] == 0  # the refused key is not tried again


async def test_the_collector_downloads_once_the_pause_ends(world: World) -> None:
    sub_id = await finished_job(world)
    world.provider.fail_before["download_file"].append(AuthError("403 Forbidden", status=403))
    await world.collector.run_once()
    world.clock.advance(world.gate.auth_pause_s)
    await world.collector.run_once()
    sub = await world.store.get_submission(sub_id)
    assert sub is not None and sub.outcome is not None  # collected and handed back
    assert (await world.events()).count("provider.auth_failed") == 1
