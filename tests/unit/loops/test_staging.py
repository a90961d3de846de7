"""The two ways a provider receives a job's requests (``BatchProvider.staging``), through the
loops: a file, encoded in the provider's own format at submit time and uploaded, or inline, the
create call reading the chunk itself (with custom_ids of the provider's own, mapped back when
the results are fetched). Exactly-once rules are the same for both."""

from __future__ import annotations

import json
from pathlib import Path

from batchd.collector import CollectPolicy
from batchd.errors import ProviderTransient, RateLimited
from batchd.models import JobState, SubmissionState
from tests.unit.loops.conftest import World, request_lines


def inline(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.provider.staging = "inline"
    return world


async def finish_all(world: World, submission_id: str) -> None:
    """End every job, its second request failing (by the id the provider was sent)."""
    for job in await world.jobs(submission_id):
        remote = world.provider.jobs[job.provider_job_id or ""]
        world.provider.finish(remote.snapshot.id, failing={remote.custom_ids[1]})
    for _ in range(3):
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(30)


async def test_an_inline_provider_gets_the_chunk_in_the_create_and_nothing_is_uploaded(
    tmp_path: Path,
) -> None:
    world = inline(tmp_path)
    sub = await world.accept("three.jsonl", request_lines(3))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING and job.input_file_id is None
    assert world.provider.calls["upload_file"] == 0 and world.provider.files == {}
    (remote,) = world.provider.by_tag(job.id)
    assert remote.spec.input_files == ()
    assert remote.spec.input is not None
    assert remote.spec.input.path == world.work.chunk(sub.id, 0)
    assert (remote.spec.input.job_id, remote.spec.input.endpoint) == (job.id, sub.endpoint)
    assert remote.custom_ids == [f"{job.id}-{i}" for i in range(3)]  # the provider's own ids


async def test_an_ambiguous_inline_create_is_reconciled_not_resent(tmp_path: Path) -> None:
    world = inline(tmp_path)
    sub = await world.accept("one.jsonl", request_lines(2))
    world.provider.fail_after["create_job"].append(ProviderTransient("read timeout"))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CREATING
    world.clock.advance(10)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["create_job"] == 1 and len(world.provider.jobs) == 1


async def test_an_inline_create_that_never_arrived_is_sent_again_inline(tmp_path: Path) -> None:
    world = inline(tmp_path)
    sub = await world.accept("one.jsonl", request_lines(2))
    world.provider.fail_before["create_job"].append(ProviderTransient("connection reset"))
    await world.submitter.run_once()
    for _ in range(40):  # past the window (60 + 120 s)
        world.clock.advance(5)
        await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["create_job"] == 2 and len(world.provider.jobs) == 1
    assert world.provider.calls["upload_file"] == 0


async def test_a_refused_inline_create_waits_as_never_sent_and_is_created_later(
    tmp_path: Path,
) -> None:
    """A 429 certainly created nothing: the job goes back to NEW (not UPLOADED: nothing was
    uploaded) and is created once the wait is over."""
    world = inline(tmp_path)
    sub = await world.accept("one.jsonl", request_lines(2))
    world.provider.fail_before["create_job"].append(RateLimited("slow down", retry_after_s=30))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.NEW and job.input_file_id is None
    world.clock.advance(60)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["create_job"] == 2 and len(world.provider.jobs) == 1
    assert world.provider.calls["upload_file"] == 0


async def test_inline_results_come_back_under_the_users_ids(tmp_path: Path) -> None:
    world = inline(tmp_path)
    world.collector.set_policy(CollectPolicy(retry_base_s=1.0, delete_result_files=True))
    sub = await world.accept("three.jsonl", request_lines(3))
    await world.submitter.run_once()
    await finish_all(world, sub.id)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    results = Path(done.results_dir or "")
    lines = [json.loads(x) for x in (results / "results.jsonl").read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["r0", "r1", "r2"]
    assert lines[1]["error"] is not None and lines[0]["status_code"] == 200
    assert world.provider.calls["delete_file"] == 0  # nothing to delete: no files


async def test_an_encoded_input_is_uploaded_in_the_providers_format(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.provider.encode = True
    sub = await world.accept("two.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    (uploaded,) = [data for ref, data in world.provider.files.values()]
    lines = [json.loads(x) for x in uploaded.splitlines()]
    assert [(x["custom_id"], x["method"], x["url"]) for x in lines] == [
        ("r0", "POST", sub.endpoint),
        ("r1", "POST", sub.endpoint),
    ]
    chunk = world.work.chunk(sub.id, 0)
    assert [set(json.loads(x)) for x in chunk.read_text().splitlines()] == [
        {"custom_id", "body"}
    ] * 2
    assert not world.work.staged(sub.id, 0).exists()  # the scratch copy is gone


async def test_an_encoded_upload_lost_in_a_crash_is_found_again_by_its_size(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    world.provider.encode = True
    sub = await world.accept("one.jsonl", request_lines(3))
    world.provider.fail_after["upload_file"].append(ProviderTransient("reset after upload"))
    await world.submitter.run_once()
    world.clock.advance(60)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert world.provider.calls["upload_file"] == 1  # the orphan (encoded, larger) was reused
    assert len(world.provider.files) == 1


async def test_result_files_are_deleted_through_the_provider(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.collector.set_policy(CollectPolicy(retry_base_s=1.0, delete_result_files=True))
    sub = await world.accept("three.jsonl", request_lines(3))
    await world.submitter.run_once()
    await finish_all(world, sub.id)
    (job,) = await world.jobs(sub.id)
    assert job.output_file_id and job.error_file_id
    assert not {job.input_file_id, job.output_file_id, job.error_file_id} & set(
        world.provider.files
    )
