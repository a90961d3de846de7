"""Two instances on one store (memory, a real SQLite file, a PostgreSQL schema): the work that
covers a whole provider (cancels, duplicate scans) is done under a named lease by one of them
at a time, and a settled submission is finished (sink run, DONE) by one of them only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from batchd.collector import Collector
from batchd.duplicates import Duplicates
from batchd.models import JobState, ResultState, Submission, SubmissionState
from batchd.sinks import FolderSink, SinkRun
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LEASE_S
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import make_store
from batchd.store.sqlite import SqliteJobStore
from batchd.tracker import Tracker, TrackPolicy
from tests.postgres_schema import fresh_schema
from tests.unit.loops.conftest import World, request_lines

CHUNKS = 3
SCAN_S = 60.0


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "postgresql":
        with fresh_schema() as url:
            s = make_store(url)
            await s.open()
            yield s
            await s.close()
        return
    s = MemoryJobStore() if request.param == "memory" else SqliteJobStore(tmp_path / "db")
    await s.open()
    yield s
    await s.close()


def second_tracker(world: World) -> Tracker:
    return Tracker(
        world.store,
        {"fake": world.provider},
        clock=world.clock,
        instance_id="bdtest",  # the deployment's tag, shared
        owner="bdother",  # this host
        policy=TrackPolicy(poll_initial_s=5.0, duplicate_scan_s=SCAN_S),
        gate=world.gate,
    )


async def running(world: World) -> Submission:
    sub = await world.accept("a.jsonl", request_lines(2 * CHUNKS))
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.set_state(job.provider_job_id or "", JobState.RUNNING)
    return sub


async def test_cancels_are_sent_by_one_instance(tmp_path: Path, store: JobStore) -> None:
    world = World(tmp_path, max_requests=2, store=store)
    sub = await running(world)
    other = second_tracker(world)
    await world.store.request_cancel(sub.id, now=world.clock.now(), event=EventSpec("x"))
    await asyncio.gather(world.tracker.run_once(), other.run_once())

    assert world.provider.calls["cancel_job"] == CHUNKS  # once per job, not once per instance
    world.clock.advance(6)
    await asyncio.gather(world.tracker.run_once(), other.run_once())
    states = {j.state for j in await world.jobs(sub.id)}
    assert states == {JobState.CANCELLING}


async def test_a_duplicate_scan_lists_and_cancels_once(tmp_path: Path, store: JobStore) -> None:
    world = World(tmp_path, max_requests=2, store=store)
    sub = await running(world)
    [first, *_] = await world.jobs(sub.id)
    [remote] = world.provider.by_tag(first.id)
    world.provider.create_now(replace(remote.spec))  # the same create, landed twice
    other = second_tracker(world)
    world.tracker._policy = replace(world.tracker._policy, duplicate_scan_s=SCAN_S)
    await asyncio.gather(world.tracker.run_once(), other.run_once())
    world.clock.advance(SCAN_S + 1)
    listed = world.provider.calls["list_jobs"]
    await asyncio.gather(world.tracker.run_once(), other.run_once())

    assert world.provider.calls["list_jobs"] - listed == 1  # one scan, not one per instance
    assert world.provider.calls["cancel_job"] == 1
    [dup] = await world.store.duplicates(submission_id=sub.id)
    assert dup.kept_provider_job_id == first.provider_job_id


class CountingSink:
    """The folder sink, counting runs; each start takes a moment, as a real disk can."""

    def __init__(self, inner: FolderSink, fail: bool = False) -> None:
        self.inner = inner
        self.fail = fail
        self.starts = 0

    async def start(self, sub: Submission) -> SinkRun:
        self.starts += 1
        if self.fail:
            raise OSError("disk full")
        await asyncio.sleep(0.02)
        return await self.inner.start(sub)


def collector(world: World, owner: str, sink: CountingSink) -> Collector:
    """A collector of host ``owner``; both hosts see the same drop folder (a shared spool)."""
    made = Collector(
        world.store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        duplicates=Duplicates(world.store, clock=world.clock, instance_id="bdtest"),
        instance_id="bdtest",
        owner=owner,
        sink=sink,
    )
    made.register_sink("folder", sink, serves=lambda sub: True)
    return made


async def test_a_settled_submission_is_finished_once(tmp_path: Path, store: JobStore) -> None:
    world = World(tmp_path, max_requests=2, store=store)
    sub = await world.accept("a.jsonl", request_lines(2 * CHUNKS))
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    folder = FolderSink(world.store, world.work, modes=lambda: world.collector._policy.modes)
    broken = CountingSink(folder, fail=True)  # collects every job, cannot finish
    await collector(world, "bdtest", broken).run_once()
    assert {j.result_state for j in await world.jobs(sub.id)} == {ResultState.COLLECTED}
    assert broken.starts == 1

    sinks = [CountingSink(folder), CountingSink(folder)]
    first, second = collector(world, "bdtest", sinks[0]), collector(world, "bdother", sinks[1])
    await asyncio.gather(first.run_once(), second.run_once())  # both look at every ACTIVE one

    assert sum(s.starts for s in sinks) == 1
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    ready = [e for e in await world.store.list_events(limit=1000) if e.type == "results.ready"]
    assert len(ready) == 1
    world.clock.advance(LEASE_S + 1)
    await asyncio.gather(first.run_once(), second.run_once())
    assert sum(s.starts for s in sinks) == 1  # DONE: nothing more to finish
