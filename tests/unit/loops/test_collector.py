from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from batchd import finishing
from batchd import results as results_module
from batchd import sinks as sinks_module
from batchd.collector import CollectPolicy
from batchd.errors import ProviderPermanent, ProviderTransient
from batchd.models import (
    Job,
    JobState,
    Outcome,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.spool import GROUP_READABLE
from batchd.store.base import EventSpec
from batchd.wiring import providers_in_use
from tests.unit.fakes import FakeProvider
from tests.unit.loops.conftest import World, request_lines


async def run_all(world: World, rounds: int = 3) -> None:
    for _ in range(rounds):
        await world.submitter.run_once()
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(30)


async def ended(world: World) -> tuple[Submission, Job]:
    """A two-request submission whose one job the provider finished and the tracker saw end
    (its results not collected yet)."""
    sub = await world.accept("two.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    (job,) = await world.jobs(sub.id)
    return sub, job


def truncate_output(world: World, job: Job) -> Callable[[], None]:
    """Make the provider serve only the first line of ``job``'s output; returns the undo."""
    ref, data = world.provider.files[job.output_file_id or ""]
    world.provider.files[ref.id] = (ref, data.splitlines(keepends=True)[0])

    def serve_whole() -> None:
        world.provider.files[ref.id] = (ref, data)

    return serve_whole


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_results_are_merged_in_input_order_across_chunks(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=4)
    content = request_lines(10)
    sub = await world.accept("ten.jsonl", content)
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.finish(job.provider_job_id or "", failing={"r5"}, shuffle=True)
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert done.outcome is Outcome.COMPLETED_WITH_ERRORS  # every request answered, one an error
    usage = {"completion_tokens": 18, "prompt_tokens": 27, "total_tokens": 45}
    assert done.results == ResultCounts(9, 1, 0, usage)
    results_dir = Path(done.results_dir or "")
    assert results_dir == world.paths.done / "ten"
    results = read_jsonl(results_dir / "results.jsonl")
    assert [r["custom_id"] for r in results] == [f"r{i}" for i in range(10)]
    assert results[0]["status_code"] == 200
    assert results[0]["response"]["choices"][0]["message"]["content"] == "re:r0"
    assert [r["custom_id"] for r in read_jsonl(results_dir / "errors.jsonl")] == ["r5"]
    assert (results_dir / "input.jsonl").read_text() == content
    summary = json.loads((results_dir / "summary.json").read_text())
    assert summary["counts"] == {"requests": 10, "succeeded": 9, "failed": 1, "missing": 0}
    assert summary["usage"] == {"completion_tokens": 18, "prompt_tokens": 27, "total_tokens": 45}
    assert [j["state"] for j in summary["jobs"]] == ["succeeded"] * 3
    assert summary["top_errors"] == [{"message": "bad request", "count": 1}]
    assert (results_dir / "results.jsonl").stat().st_mode & 0o777 == 0o600
    assert not list(world.paths.processing.iterdir())
    assert not world.work.submission(sub.id).exists()
    assert (await world.events())[-1] == "results.ready"


async def test_expired_job_keeps_partial_results(world: World) -> None:
    sub = await world.accept("five.jsonl", request_lines(5))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", state=JobState.EXPIRED, only=3)
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.PARTIAL
    results = read_jsonl(Path(done.results_dir or "") / "results.jsonl")
    assert [r["status_code"] for r in results] == [200, 200, 200, None, None]
    assert "expired" in results[4]["error"]["message"]


async def test_content_gone_ends_as_results_unavailable(world: World) -> None:
    sub, job = await ended(world)
    world.provider.files.clear()  # the provider lost the output file
    await run_all(world)
    (job,) = await world.jobs(sub.id)
    assert job.result_state is ResultState.UNAVAILABLE
    events = await world.events()
    assert "results.unavailable" in events
    assert events[-1] == "results.ready"
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.FAILED


async def test_download_failures_retry_with_backoff(world: World) -> None:
    sub, job = await ended(world)
    world.provider.fail_before["download_file"].append(ProviderTransient("reset"))
    await world.collector.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.result_state is ResultState.PENDING and job.attempts == 1
    await world.collector.run_once()  # not due yet
    assert world.provider.calls["download_file"] == 1
    world.clock.advance(5)
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE


async def test_results_that_do_not_match_are_redownloaded(world: World) -> None:
    sub, job = await ended(world)
    serve_whole = truncate_output(world, job)
    await world.collector.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.result_state is ResultState.PENDING
    assert "verification" in (job.last_error or "")
    serve_whole()  # the provider serves it whole again
    world.clock.advance(5)
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.SUCCEEDED


async def test_cancelled_submission_ends_cancelled_with_partial_results(world: World) -> None:
    sub = await world.accept("four.jsonl", request_lines(4))
    await world.submitter.run_once()
    await world.store.request_cancel(
        sub.id, now=world.clock.now(), event=EventSpec("submission.cancel_requested", {})
    )
    await world.tracker.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", state=JobState.CANCELLED, only=2)
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.CANCELLED
    results = read_jsonl(Path(done.results_dir or "") / "results.jsonl")
    assert sum(r["status_code"] == 200 for r in results) == 2
    summary = json.loads((Path(done.results_dir or "") / "summary.json").read_text())
    assert (summary["cancelled"], summary["cancel_too_late"]) == (True, False)
    # Requests were left unanswered: dropping the same content again is a retry.
    again = await world.accept("four-again.jsonl", request_lines(4))
    assert again.state is SubmissionState.ACTIVE


async def ready_data(world: World) -> dict[str, Any]:
    (event,) = [e for e in await world.store.list_events(limit=10_000) if e.type == "results.ready"]
    return event.data


async def test_a_cancel_that_came_too_late_does_not_label_a_complete_run_cancelled(
    world: World,
) -> None:
    sub = await world.accept("four.jsonl", request_lines(4))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", failing={"r3"})  # ends before the cancel
    await world.store.request_cancel(
        sub.id, now=world.clock.now(), event=EventSpec("submission.cancel_requested", {})
    )
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.COMPLETED_WITH_ERRORS
    data = await ready_data(world)
    assert data["outcome"] == "completed_with_errors"
    assert (data["cancel_requested"], data["cancel_too_late"]) == (True, True)
    assert data["counts"] == {"requests": 4, "succeeded": 3, "failed": 1, "missing": 0}
    summary = json.loads((Path(done.results_dir or "") / "summary.json").read_text())
    assert summary["outcome"] == "completed_with_errors"
    assert (summary["cancelled"], summary["cancel_too_late"]) == (False, True)
    # Every request was answered (and paid for): the same content again is a duplicate.
    again = await world.accept("four-again.jsonl", request_lines(4))
    assert again.state is SubmissionState.REJECTED
    assert "duplicate" in (again.reason or "")


async def test_failed_requests_and_token_usage_reach_the_event_and_the_store(
    world: World,
) -> None:
    sub = await world.accept("three.jsonl", request_lines(3))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", failing={"r1"})
    await run_all(world)
    data = await ready_data(world)
    assert data["counts"] == {"requests": 3, "succeeded": 2, "failed": 1, "missing": 0}
    usage = {"completion_tokens": 4, "prompt_tokens": 6, "total_tokens": 10}
    assert data["usage"] == usage
    assert data["outcome"] == "completed_with_errors"
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.results == ResultCounts(2, 1, 0, usage)


async def test_finishing_is_redone_after_a_crash(world: World) -> None:
    sub, _ = await ended(world)

    class Crash(Exception):
        pass

    real_finish = world.store.finish_submission

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash  # the process dies after writing results, before committing DONE

    world.store.finish_submission = crash  # type: ignore[method-assign]
    with contextlib.suppress(Crash):
        await world.collector.run_once()
    results = world.paths.done / "two"
    assert (results / "input.jsonl").exists()
    assert (await world.store.get_submission(sub.id)).state is SubmissionState.ACTIVE  # type: ignore[union-attr]

    world.store.finish_submission = real_finish  # type: ignore[method-assign]
    from batchd.collector import Collector

    restarted = Collector(
        world.store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        instance_id="bdtest",
    )
    await restarted.run_once()  # start-up looks at every ACTIVE submission
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert [r["custom_id"] for r in read_jsonl(results / "results.jsonl")] == ["r0", "r1"]
    assert (results / "input.jsonl").read_text() == request_lines(2)
    assert (await world.events()).count("results.ready") == 1


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes_in(results_dir: Path) -> dict[str, int]:
    names = ("results.jsonl", "errors.jsonl", "summary.json")
    found = {name: (results_dir / name).stat().st_mode & 0o777 for name in names}
    return {".": results_dir.stat().st_mode & 0o777, **found}


async def test_results_are_private_by_default_and_group_readable_when_shared(
    tmp_path: Path,
) -> None:
    private, shared = World(tmp_path / "private"), World(tmp_path / "shared")
    shared.collector.set_policy(CollectPolicy(retry_base_s=1.0, modes=GROUP_READABLE))
    dirs = []
    with umask(0o077):  # as under systemd (UMask=0077): the modes must not depend on it
        for world in (private, shared):
            sub = await world.accept("one.jsonl", request_lines(2))
            await world.submitter.run_once()
            (job,) = await world.jobs(sub.id)
            world.provider.finish(job.provider_job_id or "", failing={"r1"})
            await run_all(world)
            done = await world.store.get_submission(sub.id)
            assert done is not None and done.state is SubmissionState.DONE
            dirs.append(Path(done.results_dir or ""))
    assert set(modes_in(dirs[0]).values()) == {0o700, 0o600}
    assert modes_in(dirs[0])["."] == 0o700
    assert modes_in(dirs[1]) == {
        ".": 0o750,
        "results.jsonl": 0o640,
        "errors.jsonl": 0o640,
        "summary.json": 0o640,
    }


async def test_download_retries_do_not_use_up_the_verification_tries(world: World) -> None:
    sub, job = await ended(world)
    for _ in range(2):
        world.provider.fail_before["download_file"].append(ProviderTransient("reset"))
        await world.collector.run_once()
        world.clock.advance(60)
    serve_whole = truncate_output(world, job)  # truncated once
    await world.collector.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.result_state is ResultState.PENDING  # retried, not accepted as "unverified"
    serve_whole()
    world.clock.advance(60)
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.SUCCEEDED


async def test_results_that_stay_short_end_partial_not_succeeded(world: World) -> None:
    sub, job = await ended(world)
    truncate_output(world, job)  # always short
    for _ in range(5):
        await world.collector.run_once()
        world.clock.advance(600)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.PARTIAL
    summary = json.loads((Path(done.results_dir or "") / "summary.json").read_text())
    assert summary["counts"]["missing"] == 1


async def test_a_submission_whose_results_failed_to_write_is_finished_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = await world.accept("two.jsonl", request_lines(2))
    failures = [OSError(28, "No space left on device")]
    real_write = results_module.write_results

    def write_results(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sinks_module, "write_results", write_results)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    await world.collector.run_once()  # the disk is full
    current = await world.store.get_submission(sub.id)
    assert current is not None and current.state is SubmissionState.ACTIVE
    await world.collector.run_once()  # space again: the same collector finishes it
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE


async def test_a_provider_is_kept_open_while_a_job_still_needs_collecting(world: World) -> None:
    sub = await world.accept("two.jsonl", request_lines(2))
    assert await providers_in_use(world.store) == {"fake"}  # to be created
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.SUCCEEDED and job.result_state is ResultState.PENDING
    assert await providers_in_use(world.store) == {"fake"}  # ended, not yet collected
    await world.collector.run_once()
    assert await providers_in_use(world.store) == set()


async def finish_run(world: World, sub: Submission) -> Submission:
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        if job.provider_job_id and job.state is not JobState.SUCCEEDED:
            world.provider.finish(job.provider_job_id)
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    return done


def summary_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())  # type: ignore[no-any-return]


async def test_the_newest_run_of_a_name_is_at_done_name_and_older_ones_beside_it(
    world: World,
) -> None:
    first = await finish_run(world, await world.accept("a.jsonl", request_lines(2)))
    second = await finish_run(world, await world.accept("a.jsonl", request_lines(3)))
    done = world.paths.done
    assert second.results_dir == str(done / "a")
    assert summary_of(done / "a")["submission_id"] == second.id
    assert len(read_jsonl(done / "a" / "results.jsonl")) == 3
    older = done / f"a.{first.id}"
    assert summary_of(older)["submission_id"] == first.id
    assert summary_of(older)["files"]["results"] == str(older / "results.jsonl")
    assert len(read_jsonl(older / "results.jsonl")) == 2
    moved = await world.store.get_submission(first.id)
    assert moved is not None and moved.results_dir == str(older)
    assert sorted(p.name for p in done.iterdir()) == ["a", f"a.{first.id}"]  # no staging left


async def test_an_older_run_that_finishes_last_goes_beside_the_newest(world: World) -> None:
    first = await world.accept("a.jsonl", request_lines(2))
    second = await world.accept("a.jsonl", request_lines(3))
    await world.submitter.run_once()
    (job,) = await world.jobs(second.id)
    world.provider.finish(job.provider_job_id or "")
    await run_all(world)  # the second run finishes first
    first_done = await finish_run(world, first)
    assert first_done.results_dir == str(world.paths.done / f"a.{first.id}")
    assert summary_of(world.paths.done / "a")["submission_id"] == second.id
    second_done = await world.store.get_submission(second.id)
    assert second_done is not None and second_done.results_dir == str(world.paths.done / "a")


async def test_a_folder_batchd_did_not_write_is_left_alone(world: World) -> None:
    mine = world.paths.done / "a"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    done = await finish_run(world, await world.accept("a.jsonl", request_lines(2)))
    assert done.results_dir == str(world.paths.done / f"a.{done.id}")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


async def test_a_crash_after_the_run_was_put_in_place_is_finished_there(world: World) -> None:
    first = await finish_run(world, await world.accept("a.jsonl", request_lines(2)))
    sub = await world.accept("a.jsonl", request_lines(3))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()

    class Crash(Exception):
        pass

    real_finish = world.store.finish_submission

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash  # dies after the rename into done/a, before committing DONE

    world.store.finish_submission = crash  # type: ignore[method-assign]
    with contextlib.suppress(Crash):
        await world.collector.run_once()
    assert summary_of(world.paths.done / "a")["submission_id"] == sub.id
    world.store.finish_submission = real_finish  # type: ignore[method-assign]
    from batchd.collector import Collector

    restarted = Collector(
        world.store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        instance_id="bdtest",
    )
    await restarted.run_once()
    second = await world.store.get_submission(sub.id)
    assert second is not None and second.state is SubmissionState.DONE
    assert second.results_dir == str(world.paths.done / "a")
    assert len(read_jsonl(world.paths.done / "a" / "results.jsonl")) == 3
    assert (world.paths.done / "a" / "input.jsonl").read_text() == request_lines(3)
    assert summary_of(world.paths.done / f"a.{first.id}")["submission_id"] == first.id
    assert sorted(p.name for p in world.paths.done.iterdir()) == ["a", f"a.{first.id}"]


async def test_provider_input_files_are_deleted_once_the_results_are_written(
    world: World,
) -> None:
    sub, job = await ended(world)
    assert job.input_file_id in world.provider.files
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert job.input_file_id not in world.provider.files  # the prompts are not kept there
    assert job.output_file_id in world.provider.files  # results kept by default


async def test_result_files_are_deleted_too_when_configured(world: World) -> None:
    world.collector.set_policy(CollectPolicy(retry_base_s=1.0, delete_result_files=True))
    sub, job = await ended(world)
    await world.collector.run_once()
    assert not {job.input_file_id, job.output_file_id} & set(world.provider.files)
    done = await world.store.get_submission(sub.id)
    assert done is not None and len(read_jsonl(Path(done.results_dir or "") / "results.jsonl")) == 2


async def test_nothing_is_deleted_when_switched_off(world: World) -> None:
    world.collector.set_policy(CollectPolicy(retry_base_s=1.0, delete_input_files=False))
    _, job = await ended(world)
    await world.collector.run_once()
    assert world.provider.calls["delete_file"] == 0
    assert job.input_file_id in world.provider.files


async def test_a_failed_delete_never_holds_up_the_results(world: World) -> None:
    sub, job = await ended(world)
    world.provider.fail_before["delete_file"].append(ProviderTransient("503"))
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert job.input_file_id in world.provider.files  # left there, and logged


async def test_a_job_whose_results_are_unavailable_keeps_its_input(world: World) -> None:
    sub, job = await ended(world)
    output = world.provider.files.pop(job.output_file_id or "")  # the provider lost the output
    await run_all(world)
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert job.input_file_id in world.provider.files
    assert output is not None


def test_result_lines_are_read_by_their_own_provider_only() -> None:
    mine, other = FakeProvider(), FakeProvider(name="other")
    line = b'{"custom_id": "r1", "response": {"status_code": 200, "body": {}}}\n'
    assert finishing.parser_for("fake", {"other": other, "fake": mine})(line).ok
    parse = finishing.parser_for("fake", {"other": other})  # never other's parser
    with pytest.raises(ProviderPermanent, match="'fake' is not open"):
        parse(line)


class MemorySink:
    """A sink that keeps results in memory: what a later source's own sink plugs in as."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.summaries: dict[str, dict[str, Any]] = {}

    async def start(self, sub: Submission) -> MemoryRun:
        return MemoryRun(self, sub)


class MemoryRun:
    def __init__(self, sink: MemorySink, sub: Submission) -> None:
        self.sink, self.sub = sink, sub

    @property
    def location(self) -> Path:
        return Path(f"/memory/{self.sub.id}")

    async def write_results(
        self, jobs: Sequence[results_module.JobFiles], parse: results_module.ParseLine
    ) -> results_module.Tally:
        tally = results_module.Tally()
        lines = self.sink.lines.setdefault(self.sub.id, [])
        for item in jobs:
            for path in item.files:
                for raw in path.read_bytes().splitlines() if path.exists() else []:
                    line = parse(raw)
                    lines.append(line.custom_id)
                    tally.requests += 1
                    tally.succeeded += line.ok
                    tally.failed += not line.ok
        return tally

    async def finish(self, summary: bytes) -> str | None:
        self.sink.summaries[self.sub.id] = json.loads(summary)
        return None


async def test_results_go_to_the_collectors_sink(world: World) -> None:
    from batchd.collector import Collector

    sink = MemorySink()
    world.collector = Collector(
        world.store,
        {"fake": world.provider},
        work=world.work,
        clock=world.clock,
        sink=sink,
        instance_id="bdtest",
    )
    sub, _ = await ended(world)
    await world.collector.run_once()
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert sorted(sink.lines[sub.id]) == ["r0", "r1"]
    assert sink.summaries[sub.id]["outcome"] == "succeeded"
    assert not (world.route.spool / "done" / "two.jsonl").exists()  # not the folder sink
    (event,) = [e for e in await world.store.list_events(limit=1000) if e.type == "results.ready"]
    assert event.data["results_dir"] == f"/memory/{sub.id}"
