"""Defence in depth (issue 12): a provider job carrying a chunk's tag that batchd did not adopt
is cancelled at once, recorded, announced, and listed in summary.json, never merged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from batchd.duplicates import Verdict, classify
from batchd.models import Job, JobState, Submission
from batchd.providers.base import JobSnapshot
from batchd.tracker import TrackPolicy, duplicate_scan_interval
from tests.unit.fakes import FakeJob
from tests.unit.loops.conftest import World, request_lines

SCAN_S = 60.0  # TrackPolicy.duplicate_scan_s


async def created(world: World, n: int = 3) -> tuple[Submission, Job, FakeJob]:
    sub = await world.accept("one.jsonl", request_lines(n))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    (remote,) = world.provider.by_tag(job.id)
    return sub, job, remote


def late_copy(world: World, remote: FakeJob, **tags: str) -> JobSnapshot:
    """The same create landing again (late), possibly with other tags."""
    spec = replace(remote.spec, metadata={**remote.spec.metadata, **tags})
    return world.provider.create_now(spec)


async def scan(world: World) -> None:
    """Run the tracker until its first duplicate scan (one period after it started) is done."""
    await world.tracker.run_once()
    world.clock.advance(SCAN_S + 1)
    await world.tracker.run_once()


async def events_of(world: World, event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in await world.store.list_events(limit=10_000) if e.type == event_type]


async def test_a_late_duplicate_is_cancelled_recorded_and_announced(world: World) -> None:
    sub, job, remote = await created(world)
    dup = late_copy(world, remote)
    await world.tracker.run_once()
    assert world.provider.calls["cancel_job"] == 0  # the first scan is one period away
    world.clock.advance(SCAN_S + 1)
    await world.tracker.run_once()

    assert world.provider.jobs[dup.id].snapshot.state is JobState.CANCELLING
    assert world.provider.jobs[remote.snapshot.id].snapshot.state is JobState.PENDING
    assert await events_of(world, "batch.duplicate_cancelled") == [
        {
            "submission_id": sub.id,
            "job_id": job.id,
            "provider": "fake",
            "provider_job_id": dup.id,
            "kept_provider_job_id": job.provider_job_id,
            "state": "cancelling",
            "raw_status": "CANCELLING",
            "cancelled": True,
            "finished": False,
            "requests_completed": 0,
        }
    ]
    (recorded,) = await world.store.duplicates(submission_id=sub.id)
    assert (recorded.provider_job_id, recorded.cancelled) == (dup.id, True)
    world.clock.advance(SCAN_S + 1)
    await world.tracker.run_once()  # noticed again: nothing new
    assert world.provider.calls["cancel_job"] == 1
    assert len(await events_of(world, "batch.duplicate_cancelled")) == 1


async def test_a_sweep_cancels_a_duplicate_at_once(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=1, list_threshold=2)
    sub = await world.accept("four.jsonl", request_lines(4))
    await world.submitter.run_once()
    jobs = await world.jobs(sub.id)
    (remote,) = world.provider.by_tag(jobs[0].id)
    dup = late_copy(world, remote)
    await world.tracker.run_once()  # sweep mode: the listing shows the unexpected job
    assert world.provider.jobs[dup.id].snapshot.state is JobState.CANCELLING
    assert [d.provider_job_id for d in await world.store.duplicates()] == [dup.id]
    assert [j.state for j in await world.jobs(sub.id)] == [JobState.PENDING] * 4


async def test_a_finished_duplicate_is_reported_in_the_summary_never_merged(
    world: World,
) -> None:
    sub, job, remote = await created(world)
    dup = late_copy(world, remote)
    world.provider.finish(dup.id)  # it ran to the end before anybody noticed
    await scan(world)
    assert world.provider.calls["cancel_job"] == 0
    (event,) = await events_of(world, "batch.duplicate_cancelled")
    assert (event["cancelled"], event["finished"], event["state"]) == (False, True, "succeeded")
    assert event["requests_completed"] == 3

    world.provider.finish(job.provider_job_id or "")
    for _ in range(3):
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(30)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.results_dir
    summary = json.loads((Path(done.results_dir) / "summary.json").read_text())
    assert summary["duplicate_jobs"] == [
        {
            "job_id": job.id,
            "provider_job_id": dup.id,
            "kept_provider_job_id": job.provider_job_id,
            "state": "succeeded",
            "raw_status": "SUCCEEDED",
            "cancelled": False,
            "requests_completed": 3,
            "found": pytest.approx(summary["duplicate_jobs"][0]["found"]),
        }
    ]
    results = (Path(done.results_dir) / "results.jsonl").read_text().splitlines()
    assert [json.loads(r)["custom_id"] for r in results] == ["r0", "r1", "r2"]  # once each


async def test_only_this_instances_tags_are_judged(world: World) -> None:
    _, _, remote = await created(world)
    other = late_copy(world, remote, batchd="another-instance")  # same chunk id, not ours
    orphan = late_copy(world, remote, batchd_job="job_unknown")  # ours, but no such job
    await scan(world)
    assert world.provider.jobs[other.id].snapshot.state is JobState.PENDING
    assert world.provider.jobs[orphan.id].snapshot.state is JobState.CANCELLING
    (recorded,) = await world.store.duplicates()
    assert (recorded.provider_job_id, recorded.job_id, recorded.kept_provider_job_id) == (
        orphan.id,
        None,
        None,
    )


async def test_a_job_still_being_created_is_left_to_the_submitter(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    await world.accept("two.jsonl", request_lines(2, "t"))  # an open job: the scan runs
    world.provider.late_creates.append(0.0)  # lands at once, but the client timed out
    await world.submitter.run_once()
    world.provider.land()
    await scan(world)
    jobs = await world.jobs(sub.id)
    assert [j.state for j in jobs] == [JobState.CREATING]
    assert world.provider.calls["cancel_job"] == 0
    await world.submitter.run_once()  # its lookup adopts it
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert await world.store.duplicates() == []


async def test_a_second_job_found_by_the_reconcile_is_settled_the_same_way(world: World) -> None:
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.late_creates.append(0.0)
    await world.submitter.run_once()
    world.provider.land()
    (job,) = await world.jobs(sub.id)
    (first,) = world.provider.by_tag(job.id)
    late_copy(world, first)  # a second one landed too
    world.clock.advance(10)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.provider_job_id == first.snapshot.id
    (event,) = await events_of(world, "batch.duplicate_cancelled")
    assert event["kept_provider_job_id"] == first.snapshot.id
    assert event["cancelled"] is True


def snap(tags: dict[str, str], pid: str = "pj-1") -> JobSnapshot:
    return JobSnapshot(pid, JobState.RUNNING, "RUNNING", "/v1/chat/completions", metadata=tags)


def job_with(state: JobState, provider_job_id: str | None) -> Job:
    return Job("job_1", "sub_1", 0, "p", state, 0, 1, 1, provider_job_id=provider_job_id)


ME = {"batchd": "me", "batchd_job": "job_1"}


@pytest.mark.parametrize(
    ("tags", "job", "verdict"),
    [
        ({"batchd": "other", "batchd_job": "job_1"}, None, Verdict.FOREIGN),
        ({"batchd_job": "job_1"}, None, Verdict.FOREIGN),
        ({"batchd": "me"}, None, Verdict.FOREIGN),
        ({"batchd": "me", "batchd_job": "job_x"}, None, Verdict.DUPLICATE),
        (ME, job_with(JobState.RUNNING, "pj-1"), Verdict.OURS),
        (
            {"batchd": "me", "batchd_job": "job_1"},
            job_with(JobState.CREATING, None),
            Verdict.CREATING,
        ),
        (
            {"batchd": "me", "batchd_job": "job_1"},
            job_with(JobState.UPLOADED, None),
            Verdict.CREATING,
        ),
        (
            {"batchd": "me", "batchd_job": "job_1"},
            job_with(JobState.RUNNING, "pj-0"),
            Verdict.DUPLICATE,
        ),
        (
            {"batchd": "me", "batchd_job": "job_1"},
            job_with(JobState.SUCCEEDED, "pj-0"),
            Verdict.DUPLICATE,
        ),
        (
            {"batchd": "me", "batchd_job": "job_1"},
            job_with(JobState.FAILED, None),
            Verdict.DUPLICATE,
        ),
    ],
)
def test_classify(tags: dict[str, str], job: Job | None, verdict: Verdict) -> None:
    assert classify(snap(tags), job, "me") is verdict


def test_an_ended_job_whose_tag_names_no_job_is_left_alone() -> None:
    """Retention removes the rows of old finished submissions; their jobs are not duplicates."""
    ended = replace(snap(ME), state=JobState.SUCCEEDED, raw_status="SUCCESS")
    assert classify(ended, None, "me") is Verdict.GONE
    assert classify(snap(ME), None, "me") is Verdict.DUPLICATE  # still running: cancelled


async def test_the_summary_lists_a_duplicate_the_tracker_has_not_seen_yet(world: World) -> None:
    """Before writing summary.json the collector lists the submission's jobs once."""
    sub, job, remote = await created(world)
    dup = late_copy(world, remote)
    world.provider.finish(job.provider_job_id or "")
    for _ in range(3):  # the tracker's first duplicate scan is a minute away
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(5)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.results_dir
    summary = json.loads((Path(done.results_dir) / "summary.json").read_text())
    assert [(d["provider_job_id"], d["cancelled"]) for d in summary["duplicate_jobs"]] == [
        (dup.id, True)
    ]
    assert world.provider.jobs[dup.id].snapshot.state is JobState.CANCELLING


def test_duplicate_scans_use_at_most_a_tenth_of_the_request_budget() -> None:
    policy = TrackPolicy(requests_per_second=5.0, duplicate_scan_s=60.0)
    assert duplicate_scan_interval(1, policy) == 60.0
    assert duplicate_scan_interval(100, policy) == 200.0  # 10,000 jobs: 100 pages per scan
    assert duplicate_scan_interval(100, replace(policy, requests_per_second=0)) == 60.0
