from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.errors import AuthError, NotFound, ProviderPermanent, ProviderTransient, RateLimited
from batchd.models import Job, JobState
from batchd.providers.base import JobFilter, JobSnapshot, JobSpec, TagQuery
from batchd.reconcile import CLOCK_SKEW_S
from batchd.store.base import EventSpec
from batchd.submitter import SubmitPolicy, Submitter
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


async def test_the_upload_and_the_create_attempt_are_committed_together(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NEW (attempts + 1) -> upload -> CREATING with the file and the attempt -> create ->
    # PENDING: three commits per job, each before the act that depends on it.
    sub = await world.accept("one.jsonl", request_lines(3))
    transitions: list[tuple[JobState, JobState]] = []
    transition = world.store.transition_job

    async def record(job_id: str, old: JobState, new: JobState, **fields: Any) -> Job:
        transitions.append((old, new))
        return await transition(job_id, old, new, **fields)

    at_create: list[Job] = []
    create = world.provider.create_job

    async def look_then_create(spec: JobSpec) -> JobSnapshot:
        at_create.extend(await world.jobs(sub.id))
        return await create(spec)

    monkeypatch.setattr(world.store, "transition_job", record)
    monkeypatch.setattr(world.provider, "create_job", look_then_create)
    await world.submitter.run_once()
    new, creating, pending = JobState.NEW, JobState.CREATING, JobState.PENDING
    assert transitions == [(new, new), (new, creating), (creating, pending)]
    (committed,) = at_create  # what a crash during the create would resume from
    assert committed.state is JobState.CREATING
    assert committed.input_file_id in world.provider.files
    assert committed.attempts == 1
    assert committed.reconcile_until is not None


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


async def pass_the_window(world: World, seconds: float = 200.0, step_s: float = 5.0) -> None:
    """Run the submitter every ``step_s`` for ``seconds`` (the default window is 60 + 120 s)."""
    for _ in range(int(seconds / step_s)):
        world.clock.advance(step_s)
        await world.submitter.run_once()


async def test_create_that_never_arrived_is_sent_again_after_the_window(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    await pass_the_window(world)
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["list_jobs"] >= 3  # looked up (with backoff) first
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

    async def ignoring_the_tag(query: TagQuery) -> AsyncIterator[JobSnapshot]:
        async for snap in iter_jobs(JobFilter(states=query.states)):
            yield snap

    world.provider.find_tagged = ignoring_the_tag  # type: ignore[method-assign]
    await pass_the_window(world)

    (job,) = await world.jobs(sub.id)
    (unrelated,) = await world.jobs(other.id)
    assert job.state is JobState.PENDING
    assert job.provider_job_id != unrelated.provider_job_id
    assert world.provider.calls["cancel_job"] == 0  # the unrelated job was not "a duplicate"
    assert len(world.provider.by_tag(job.id)) == 1


# ------------------------------------------------------------------ the reconcile window (issue 12)


async def test_a_create_that_lands_after_the_client_timed_out_makes_one_job(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.late_creates.append(150.0)  # applied 150 s later: inside the 180 s window
    await world.submitter.run_once()
    await pass_the_window(world, seconds=400)
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["create_job"] == 1  # never sent again
    assert [j.snapshot.id for j in world.provider.by_tag(job.id)] == [job.provider_job_id]


async def test_a_restart_resumes_the_window_and_never_shortens_it(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.hang_creates = True
    world.provider.late_creates.append(170.0)
    sent = asyncio.create_task(world.submitter.run_once())
    while world.provider.calls["create_job"] == 0:
        await asyncio.sleep(0)
    sent.cancel()  # killed while the create is in flight: nothing after the send is recorded
    with contextlib.suppress(asyncio.CancelledError):
        await sent
    world.provider.hang_creates = False
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CREATING and job.attempts == 1
    assert job.reconcile_until == pytest.approx(world.clock.now() + 180.0)
    restarted = Submitter(  # even configured with no grace at all, it keeps the committed window
        world.store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        instance_id="bdtest",
        policy=SubmitPolicy(reconcile_delay_s=5.0, reconcile_window_s=0.0),
    )
    for _ in range(60):
        world.clock.advance(5)
        await restarted.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["create_job"] == 1
    assert len(world.provider.by_tag(job.id)) == 1


async def test_each_create_commits_its_attempt_and_window_before_it_is_sent(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    (job,) = await world.jobs(sub.id)
    world.provider.fail_before["create_job"].append(ProviderTransient("HTTP 503", status=503))
    create = world.provider.create_job
    seen: list[tuple[JobState, int, float | None, float]] = []

    async def recording(spec: JobSpec) -> JobSnapshot:
        stored = await world.store.get_job(job.id)
        assert stored is not None
        seen.append((stored.state, stored.attempts, stored.reconcile_until, world.clock.now()))
        return await create(spec)

    world.provider.create_job = recording  # type: ignore[method-assign]
    await world.submitter.run_once()
    await pass_the_window(world)
    assert [(state, attempts) for state, attempts, _, _ in seen] == [
        (JobState.CREATING, 1),
        (JobState.CREATING, 2),  # the re-create after the window is committed too
    ]
    (first, second) = seen
    assert first[2] == pytest.approx(first[3] + 180.0)
    assert second[2] == pytest.approx(second[3] + 180.0)
    assert first[2] is not None and second[3] >= first[2]  # only once the window had passed


async def test_every_missed_lookup_is_logged_with_what_comes_next(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    (job,) = await world.jobs(sub.id)
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    with capture_logs() as logs:
        await pass_the_window(world)
    misses = [e for e in logs if e["event"] == "submit.reconcile_missed"]
    assert [e["lookup"] for e in misses] == list(range(1, len(misses) + 1))
    assert len(misses) >= 4
    assert misses[0] == {
        "event": "submit.reconcile_missed",
        "log_level": "info",
        "job_id": job.id,
        "create_attempt": 1,
        "lookup": 1,
        "next_lookup_in_s": 5.0,
        "recreate_in_s": pytest.approx(175.0),
    }
    assert misses[-1]["next_lookup_in_s"] is None  # the window has passed: created again
    assert misses[-1]["recreate_in_s"] == 0.0


async def test_a_429_on_create_is_not_ambiguous(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(RateLimited("HTTP 429", retry_after_s=7.0))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.UPLOADED  # nothing was created: no reconcile window
    assert job.next_attempt_at >= world.clock.now() + 7.0
    world.clock.advance(30)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["list_jobs"] == 0  # never looked up
    assert world.provider.calls["create_job"] == 2


async def test_an_auth_refusal_on_create_is_not_ambiguous(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(AuthError("HTTP 401", status=401))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.UPLOADED
    assert "provider.auth_failed" in await world.events()
    world.clock.advance(400)  # the auth pause is over
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["list_jobs"] == 0


async def test_a_400_naming_the_missing_input_file_uploads_again(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    create = world.provider.create_job

    async def input_gone_once(spec: JobSpec) -> JobSnapshot:
        if world.provider.calls["create_job"] == 0:
            world.provider.calls["create_job"] += 1
            raise ProviderPermanent(f"HTTP 400: File {spec.input_files[0]} not found", status=400)
        return await create(spec)

    world.provider.create_job = input_gone_once  # type: ignore[method-assign]
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.NEW and job.input_file_id is None  # not refused
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["upload_file"] == 2


def lose_every_input(world: World) -> None:
    """The provider answers every create: the input file is not found."""

    async def input_gone(spec: JobSpec) -> JobSnapshot:
        world.provider.calls["create_job"] += 1
        raise NotFound(f"HTTP 404: file {spec.input_files[0]} not found", status=404)

    world.provider.create_job = input_gone  # type: ignore[method-assign]


async def test_an_input_lost_again_and_again_fails_the_chunk(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    lose_every_input(world)
    await world.submitter.run_once()  # created, refused: the input is gone
    await world.submitter.run_once()  # the first upload again is sent at once, and refused
    assert world.provider.calls["upload_file"] == 2
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.NEW and job.next_attempt_at > world.clock.now()
    await world.submitter.run_once()  # the next one waits (backoff): nothing sent
    assert world.provider.calls["upload_file"] == 2
    for _ in range(5):
        world.clock.advance(60)
        await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.FAILED
    assert job.last_error is not None and "kept losing the uploaded input" in job.last_error
    assert world.provider.calls["upload_file"] == 4  # the first upload and 3 more, no more
    assert world.provider.calls["create_job"] == 4
    assert (await world.events()).count("batch.failed") == 1


async def test_an_input_lost_three_times_is_still_created_on_the_fourth(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    create = world.provider.create_job
    lost = [3]  # the provider loses the first three uploads, then keeps one

    async def input_gone(spec: JobSpec) -> JobSnapshot:
        if lost[0]:
            lost[0] -= 1
            world.provider.calls["create_job"] += 1
            raise NotFound(f"HTTP 404: file {spec.input_files[0]} not found", status=404)
        return await create(spec)

    world.provider.create_job = input_gone  # type: ignore[method-assign]
    for _ in range(6):
        await world.submitter.run_once()
        world.clock.advance(60)
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["upload_file"] == 4


async def test_a_cancel_during_the_window_is_not_followed_by_a_new_create(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    await world.store.request_cancel(sub.id, now=world.clock.now(), event=EventSpec("t.cancel"))
    await pass_the_window(world)
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CANCELLED
    assert world.provider.calls["create_job"] == 1  # nothing was created: nothing sent again
    assert world.provider.jobs == {}


async def test_reconcile_asks_only_for_jobs_created_since_the_job(world: World) -> None:
    """A provider without a metadata filter walks its list newest first: the lookup tells it
    where to stop (the job's creation, minus clock skew)."""
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    find_tagged = world.provider.find_tagged
    queries: list[TagQuery] = []

    def recording(query: TagQuery) -> AsyncIterator[JobSnapshot]:
        queries.append(query)
        return find_tagged(query)

    world.provider.find_tagged = recording  # type: ignore[method-assign]
    await pass_the_window(world)
    (job,) = await world.jobs(sub.id)
    assert queries
    assert {q.created_after for q in queries} == {job.created_at - CLOCK_SKEW_S}
    assert {tuple(q.tag.items()) for q in queries} == {(("batchd_job", job.id),)}
