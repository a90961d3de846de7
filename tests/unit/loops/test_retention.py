"""Retention: the housekeeper removes old done/ folders, events and finished rows on its
schedule; ``collect_garbage`` without ``apply`` only reports (the ``batchd gc`` dry run)."""

from __future__ import annotations

from pathlib import Path

from batchd.models import JobState, Submission, SubmissionState
from batchd.retention import DAY_S, Housekeeper, RetentionPolicy, collect_garbage
from tests.unit.loops.conftest import World, request_lines


async def finished(world: World, name: str, lines: int = 2) -> Submission:
    sub = await world.accept(name, request_lines(lines, prefix=name[:2]))
    await world.submitter.run_once()
    for job in await world.jobs(sub.id):
        world.provider.finish(job.provider_job_id or "", state=JobState.SUCCEEDED)
    await world.tracker.run_once()
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    return done


async def deliver_everything(world: World) -> None:
    for event in await world.store.unfanned_events(limit=10_000):
        await world.store.fan_out(event.id, [], now=world.clock.now())


async def test_the_dry_run_reports_and_removes_nothing(world: World) -> None:
    done = await finished(world, "old.jsonl")
    await deliver_everything(world)
    world.clock.advance(10 * DAY_S)
    policy = RetentionPolicy(done_days=7, events_days=7, rows_days=7)
    report = await collect_garbage(world.store, policy, now=world.clock.now(), apply=False)
    assert report.folders == (Path(done.results_dir or ""),)
    assert (report.counts.submissions, report.counts.jobs) == (1, 1)
    assert report.counts.events == len(await world.store.list_events(limit=10_000))
    assert Path(done.results_dir or "").is_dir()
    assert await world.store.get_submission(done.id) is not None


async def test_the_housekeeper_removes_what_is_past_its_days(world: World) -> None:
    old = await finished(world, "old.jsonl")
    await deliver_everything(world)
    world.clock.advance(10 * DAY_S)
    new = await finished(world, "new.jsonl", lines=3)
    keeper = Housekeeper(
        world.store,
        clock=world.clock,
        policy=RetentionPolicy(done_days=7, events_days=30, rows_days=30),
    )
    assert await keeper.run_once() == 1  # the old folder only (events and rows: 30 days)
    assert not Path(old.results_dir or "").exists()
    assert Path(new.results_dir or "").is_dir()
    assert await world.store.get_submission(old.id) is not None
    assert await keeper.run_once() == 0  # not due again before interval_s

    await deliver_everything(world)
    world.clock.advance(25 * DAY_S)  # the old run is 35 days old, the new one 25
    assert await keeper.run_once() > 0
    assert await world.store.get_submission(old.id) is None
    assert await world.store.get_submission(new.id) is not None
    assert not Path(new.results_dir or "").exists()  # its folder was 25 > 7 days old


async def test_a_folder_that_holds_another_run_is_not_removed(world: World) -> None:
    old = await finished(world, "a.jsonl")
    world.clock.advance(10 * DAY_S)
    newer = await finished(world, "a.jsonl", lines=3)  # done/a is now the newer run
    world.clock.advance(1 * DAY_S)
    policy = RetentionPolicy(done_days=7, events_days=0, rows_days=0)
    report = await collect_garbage(world.store, policy, now=world.clock.now(), apply=True)
    moved = await world.store.get_submission(old.id)
    assert moved is not None and report.folders == (Path(moved.results_dir or ""),)
    assert Path(newer.results_dir or "").is_dir()
    assert (Path(newer.results_dir or "") / "results.jsonl").exists()


async def test_zero_days_keeps_everything(world: World) -> None:
    done = await finished(world, "old.jsonl")
    await deliver_everything(world)
    world.clock.advance(3650 * DAY_S)
    policy = RetentionPolicy(done_days=0, events_days=0, rows_days=0)
    report = await collect_garbage(world.store, policy, now=world.clock.now(), apply=True)
    assert not report.anything
    assert Path(done.results_dir or "").is_dir()
