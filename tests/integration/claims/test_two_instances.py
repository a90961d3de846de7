"""Two instances on one store (the memory store, a real SQLite file, a PostgreSQL schema): their
loops take work with ``claim_due``, so a job is uploaded and created, polled and applied, or
downloaded, by one of them only. Both tag provider jobs with the deployment's id (``bdtest``);
each claims work as its own host (``bdtest`` for the world's loops, ``bdother`` for the
second instance)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchd.collector import Collector
from batchd.duplicates import Duplicates
from batchd.models import JobState, ResultState
from batchd.providers.base import FileRef, JobSnapshot, JobSpec
from batchd.store.base import JobStore
from batchd.store.leases import LEASE_S
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import make_store
from batchd.store.sqlite import SqliteJobStore
from batchd.submitter import SubmitPolicy, Submitter
from batchd.tracker import Tracker, TrackPolicy
from tests.postgres_schema import fresh_schema
from tests.unit.fakes import FakeProvider
from tests.unit.loops.conftest import World, request_lines

CHUNKS = 4


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


def slow(provider: FakeProvider) -> None:
    """Every upload and create takes a moment, as over a network: the other instance runs."""
    upload, create = provider.upload_file, provider.create_job

    async def upload_file(path: Path, *, filename: str | None = None) -> FileRef:
        await asyncio.sleep(0.02)
        return await upload(path, filename=filename)

    async def create_job(spec: JobSpec) -> JobSnapshot:
        await asyncio.sleep(0.02)
        return await create(spec)

    provider.upload_file = upload_file  # type: ignore[method-assign]
    provider.create_job = create_job  # type: ignore[method-assign]


async def test_two_submitters_upload_and_create_each_job_once(
    tmp_path: Path, store: JobStore
) -> None:
    world = World(tmp_path, max_requests=2, store=store)
    sub = await world.accept("a.jsonl", request_lines(2 * CHUNKS))
    assert len(await world.jobs(sub.id)) == CHUNKS
    slow(world.provider)
    other = Submitter(
        store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        instance_id="bdtest",
        owner="bdother",
        policy=SubmitPolicy(reconcile_delay_s=5.0),
        gate=world.gate,
    )
    for _ in range(3):
        await asyncio.gather(world.submitter.run_once(), other.run_once())
        world.clock.advance(1)

    jobs = await world.jobs(sub.id)
    assert {j.state for j in jobs} == {JobState.PENDING}
    assert world.provider.calls["upload_file"] == CHUNKS
    assert world.provider.calls["create_job"] == CHUNKS
    assert len(world.provider.jobs) == CHUNKS
    assert sorted(j.provider_job_id or "" for j in jobs) == sorted(world.provider.jobs)


async def test_two_collectors_download_each_job_once(tmp_path: Path, store: JobStore) -> None:
    world = World(tmp_path, max_requests=2, store=store)
    sub = await world.accept("a.jsonl", request_lines(2 * CHUNKS))
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    world.clock.advance(LEASE_S + 1)  # the submitter's claims have run out: both may take them
    downloads: list[str] = []
    download = world.provider.download_file

    async def download_file(file_id: str, to_path: Path) -> int:
        downloads.append(file_id)
        await asyncio.sleep(0.02)
        return await download(file_id, to_path)

    world.provider.download_file = download_file  # type: ignore[method-assign]
    other = Collector(
        store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        duplicates=Duplicates(store, clock=world.clock, instance_id="bdtest"),
        instance_id="bdtest",
        owner="bdother",
    )
    for _ in range(3):
        await asyncio.gather(world.collector.run_once(), other.run_once(), return_exceptions=True)
        world.clock.advance(1)

    jobs = await world.jobs(sub.id)
    assert {j.result_state for j in jobs} == {ResultState.COLLECTED}
    assert sorted(downloads) == sorted(set(downloads))
    assert len(downloads) == len({j.output_file_id for j in jobs})


@pytest.mark.parametrize("list_threshold", [10, 2], ids=["polls", "sweeps"])
async def test_two_trackers_poll_and_apply_each_job_once(
    tmp_path: Path, store: JobStore, list_threshold: int
) -> None:
    world = World(tmp_path, max_requests=2, store=store, list_threshold=list_threshold)
    sub = await world.accept("a.jsonl", request_lines(2 * CHUNKS))
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.finish(job.provider_job_id or "")
    world.clock.advance(LEASE_S + 1)  # the submitter's claims have run out: both may take them
    polled: list[str] = []
    get_job = world.provider.get_job

    async def slow_get_job(job_id: str, *, inline: bool | None = None) -> JobSnapshot:
        polled.append(job_id)
        await asyncio.sleep(0.02)
        return await get_job(job_id, inline=inline)

    world.provider.get_job = slow_get_job  # type: ignore[method-assign]
    other = Tracker(
        store,
        {"fake": world.provider},
        clock=world.clock,
        instance_id="bdtest",
        owner="bdother",
        policy=TrackPolicy(list_threshold=list_threshold, poll_initial_s=5.0),
        gate=world.gate,
    )
    await asyncio.gather(world.tracker.run_once(), other.run_once())

    jobs = await world.jobs(sub.id)
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    assert sorted(polled) == sorted(set(polled))  # no job polled by both
    if list_threshold == 2:  # one instance sweeps the provider: one listing, not two
        assert world.provider.calls["list_jobs"] == 1
    ended = [e for e in await store.list_events(limit=1000) if e.type == "batch.succeeded"]
    assert len(ended) == CHUNKS
