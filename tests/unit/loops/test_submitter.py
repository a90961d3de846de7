from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from batchd.errors import AuthError, NotFound, ProviderPermanent, ProviderTransient
from batchd.models import JobState
from batchd.providers.base import JobFilter, JobSnapshot, JobSpec
from tests.unit.loops.conftest import World, request_lines


async def test_each_chunk_becomes_one_tagged_provider_job(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=4)
    sub = await world.accept("ten.jsonl", request_lines(10))
    await world.submitter.run_once()
    jobs = await world.jobs(sub.id)
    assert [j.state for j in jobs] == [JobState.PENDING] * 3
    assert len(world.provider.jobs) == 3
    for job in jobs:
        (remote,) = world.provider.by_tag(job.id)
        assert remote.snapshot.id == job.provider_job_id
        assert remote.spec.metadata == {
            "team": "ml",
            "batchd": "bdtest",
            "batchd_job": job.id,
            "batchd_submission": sub.id,
            "batchd_route": "chat",
        }
        assert remote.spec.model == "m"
        assert len(remote.custom_ids) == job.line_count
    uploads = sorted(ref.filename for ref, _ in world.provider.files.values())
    assert uploads == sorted(f"batchd-{j.id}.jsonl" for j in jobs)
    assert (await world.events()).count("batch.created") == 3


async def test_ambiguous_create_is_reconciled_not_resent(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_after["create_job"].append(ProviderTransient("read timeout"))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CREATING
    assert len(world.provider.jobs) == 1  # it was created, but we could not know
    await world.submitter.run_once()  # not due yet: reconcile waits reconcile_delay_s
    assert world.provider.calls["list_jobs"] == 0
    world.clock.advance(10)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert job.provider_job_id == next(iter(world.provider.jobs))
    assert world.provider.calls["create_job"] == 1
    assert len(world.provider.jobs) == 1


async def test_create_that_never_arrived_is_sent_again_after_lookup(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    world.clock.advance(10)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["list_jobs"] == 1  # looked up first
    assert world.provider.calls["create_job"] == 2
    assert len(world.provider.jobs) == 1


async def test_upload_lost_in_a_crash_is_found_again(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_after["upload_file"].append(ProviderTransient("reset after upload"))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.NEW and job.attempts == 1
    world.clock.advance(60)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["upload_file"] == 1  # the orphan was reused
    assert len(world.provider.files) == 1


async def test_definite_refusal_fails_the_job_without_retry(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(
        ProviderPermanent("model not found", status=422)
    )
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.FAILED
    assert job.last_error == "model not found"
    assert "batch.failed" in await world.events()
    world.clock.advance(600)
    await world.submitter.run_once()
    assert world.provider.calls["create_job"] == 1


async def test_auth_failure_pauses_the_provider_once(world: World) -> None:
    await world.accept("a.jsonl", request_lines(2, prefix="a"))
    await world.accept("b.jsonl", request_lines(2, prefix="b"))
    world.provider.fail_before["upload_file"].extend([AuthError("401 Unauthorized", status=401)])
    await world.submitter.run_once()
    calls = sum(world.provider.calls.values())
    world.clock.advance(60)
    await world.submitter.run_once()
    assert sum(world.provider.calls.values()) == calls  # paused: nothing sent
    assert (await world.events()).count("provider.auth_failed") == 1
    world.clock.advance(300)
    await world.submitter.run_once()
    assert len(world.provider.jobs) == 2


async def test_vanished_input_file_is_uploaded_again(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(NotFound("file not found", status=404))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.NEW
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["upload_file"] == 2


async def test_cancel_before_sending_sends_nothing(world: World) -> None:
    from batchd.store.base import EventSpec

    sub = await world.accept("one.jsonl", request_lines(3))
    await world.store.request_cancel(
        sub.id, now=world.clock.now(), event=EventSpec("submission.cancel_requested", {})
    )
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CANCELLED
    assert sum(world.provider.calls.values()) == 0


async def test_a_permanent_upload_refusal_fails_the_job_once(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["upload_file"].append(ProviderPermanent("413 file too large"))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.FAILED
    assert "413" in (job.last_error or "")
    world.clock.advance(3600)
    await world.submitter.run_once()
    assert world.provider.calls["upload_file"] == 1  # not retried
    failed = [e for e in await world.store.list_events() if e.type == "batch.failed"]
    assert [e.data["stage"] for e in failed] == ["upload"]


async def test_one_failing_job_neither_stops_the_pass_nor_leaves_a_create_in_flight(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    broken = await world.accept("a.jsonl", request_lines(1, "a"))
    healthy = await world.accept("b.jsonl", request_lines(1, "b"))
    world.work.chunk(broken.id, 0).unlink()  # a local fault: its upload raises FileNotFoundError
    release = asyncio.Event()
    create = world.provider.create_job

    async def slow_create(spec: JobSpec) -> JobSnapshot:
        await release.wait()  # the server takes its time
        return await create(spec)

    world.provider.create_job = slow_create  # type: ignore[method-assign]
    first = asyncio.create_task(world.submitter.run_once())
    await asyncio.sleep(0.05)
    assert not first.done()  # the pass waits for the create in flight
    release.set()
    await first
    world.clock.advance(10)
    await world.submitter.run_once()

    (job,) = await world.jobs(healthy.id)
    assert job.state is JobState.PENDING
    assert len(world.provider.by_tag(job.id)) == 1  # created once, not twice
    (stuck,) = await world.jobs(broken.id)
    assert stuck.state is JobState.NEW
    assert "No such file" in (stuck.last_error or "")


async def test_reconcile_ignores_jobs_that_are_not_tagged_with_this_job(world: World) -> None:
    other = await world.accept("other.jsonl", request_lines(2, "o"))
    await world.submitter.run_once()  # an unrelated job exists at the provider
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    iter_jobs = world.provider.iter_jobs

    async def ignoring_the_filter(filters: JobFilter) -> AsyncIterator[JobSnapshot]:
        async for snap in iter_jobs(replace(filters, metadata={})):
            yield snap

    world.provider.iter_jobs = ignoring_the_filter  # type: ignore[method-assign]
    world.clock.advance(10)
    await world.submitter.run_once()

    (job,) = await world.jobs(sub.id)
    (unrelated,) = await world.jobs(other.id)
    assert job.state is JobState.PENDING
    assert job.provider_job_id != unrelated.provider_job_id
    assert world.provider.calls["cancel_job"] == 0  # the unrelated job was not "a duplicate"
    assert len(world.provider.by_tag(job.id)) == 1
