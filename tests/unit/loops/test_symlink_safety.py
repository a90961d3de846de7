"""Results and rejection reasons are never written through a symbolic link (issue 13, item
7): a local user who replaces done/ or rejected/ by a link to elsewhere gets nothing written
there; batchd says so and writes once the folder is a folder again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from structlog.testing import capture_logs

from batchd.models import SubmissionState
from tests.unit.loops.conftest import World, processing_of, request_lines


async def run_all(world: World, rounds: int = 3) -> None:
    for _ in range(rounds):
        await world.submitter.run_once()
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(30)


def swap_for_link(folder: Path, elsewhere: Path) -> None:
    """What a hostile user with write access to the spool root does."""
    elsewhere.mkdir()
    shutil.rmtree(folder)
    folder.symlink_to(elsewhere)


async def test_results_are_not_written_through_a_linked_done_folder(
    tmp_path: Path, world: World
) -> None:
    sub = await world.accept("two.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    elsewhere = tmp_path / "elsewhere"
    swap_for_link(world.paths.done, elsewhere)
    with capture_logs() as logs:
        await run_all(world)
    assert list(elsewhere.iterdir()) == []  # nothing written where the link points
    refused = [e for e in logs if e["event"] == "collect.unsafe_folder"]
    assert refused and refused[0]["submission_id"] == sub.id
    assert f"{world.paths.done} is a symbolic link; batchd does not write through it" in str(
        refused[0]["error"]
    )
    current = await world.store.get_submission(sub.id)
    assert current is not None and current.state is SubmissionState.ACTIVE  # not lost
    processing = processing_of(current)
    assert processing.exists()  # the input stays in processing/

    world.paths.done.unlink()  # the administrator repairs it
    world.paths.done.mkdir()
    await run_all(world)
    current = await world.store.get_submission(sub.id)
    assert current is not None and current.state is SubmissionState.DONE
    results = world.paths.done / "two"
    assert len((results / "results.jsonl").read_text().splitlines()) == 2
    assert (results / "input.jsonl").exists() and not processing.exists()
    assert json.loads((results / "summary.json").read_text())["submission_id"] == sub.id


async def test_reasons_are_not_written_through_a_linked_rejected_folder(
    tmp_path: Path, world: World
) -> None:
    elsewhere = tmp_path / "elsewhere"
    swap_for_link(world.paths.rejected, elsewhere)
    world.drop("bad.jsonl", "not json\n")
    with capture_logs() as logs:
        for _ in range(3):
            await world.intake.run_once()
            world.clock.advance(3)
    assert list(elsewhere.iterdir()) == []
    text = json.dumps(logs, default=str)
    assert f"{world.paths.rejected} is a symbolic link; batchd does not write through it" in text


async def test_a_rejection_refused_by_a_linked_folder_lands_once_it_is_repaired(
    tmp_path: Path, world: World
) -> None:
    elsewhere = tmp_path / "elsewhere"
    swap_for_link(world.paths.rejected, elsewhere)
    world.drop("bad.jsonl", "not json\n")
    with capture_logs() as logs:
        for _ in range(60):  # 3 minutes: past the tries and the give-up
            await world.intake.run_once()
            world.clock.advance(3)
    assert list(elsewhere.iterdir()) == []
    (sub,) = await world.store.list_submissions()
    assert sub.state is SubmissionState.CLAIMED  # waits in processing/, not lost
    assert processing_of(sub).exists()
    events = [e["event"] for e in logs]
    # tried again after the give-up failed, but with backoff (at most once a minute), not
    # every scan
    assert 2 <= events.count("intake.give_up_failed") <= 4

    world.paths.rejected.unlink()  # the administrator repairs it
    world.paths.rejected.mkdir()
    for _ in range(25):  # the next try is at most a minute away
        await world.intake.run_once()
        world.clock.advance(3)
    current = await world.store.get_submission(sub.id)
    assert current is not None and current.state is SubmissionState.REJECTED
    assert (world.paths.rejected / "bad.jsonl").read_text() == "not json\n"
    assert "line 1" in (world.paths.rejected / "bad.reason.txt").read_text()  # its own reason
    assert list(world.paths.processing.iterdir()) == []
    assert list(elsewhere.iterdir()) == []
