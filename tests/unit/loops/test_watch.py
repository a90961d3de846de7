"""``batchd jobs watch``: one frame drawn from the store (what ``--once`` prints)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from rich.console import Console

from batchd.cli._watch import Watch, fmt_eta, frame, rate_and_eta
from batchd.cli._watch import render as watch_render
from batchd.cli._watch import watch as watch_loop
from batchd.models import JobState, RequestCounts
from tests.unit.loops.conftest import World, request_lines


def render(renderable: object) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_a_frame_shows_each_open_submission_with_its_progress(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=4)
    assert await frame(world.store) == "no open submissions"
    sub = await world.accept("ten.jsonl", request_lines(10))
    await world.submitter.run_once()
    first, *_ = await world.jobs(sub.id)
    world.provider.finish(first.provider_job_id or "")
    await world.tracker.run_once()

    text = render(await frame(world.store))
    assert "ten.jsonl (chat)" in text
    assert "4/10" in text  # the finished chunk's 4 requests of 10
    assert "pending" in text and "succeeded" in text


async def test_counters_rate_and_eta_follow_the_provider_across_frames(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=100)
    sub = await world.accept("ten.jsonl", request_lines(10))
    await world.submitter.run_once()
    [job] = await world.jobs(sub.id)
    pid = job.provider_job_id or ""
    watch = Watch(world.store, clock=world.clock.now)

    world.provider.set_state(pid, JobState.RUNNING, counts=RequestCounts(10, 2, 1, 1))
    await world.tracker.run_once()
    [row] = await watch.rows()
    assert (row.completed, row.requests, row.failed, row.rate, row.eta_s) == (2, 10, 1, None, None)

    world.provider.set_state(pid, JobState.RUNNING, counts=RequestCounts(10, 6, 4, 2))
    world.clock.advance(10)
    await world.tracker.run_once()
    [row] = await watch.rows()
    assert (row.completed, row.failed) == (6, 2)  # not the first frame's counters
    assert row.rate == pytest.approx(0.4) and row.eta_s == pytest.approx(10.0)
    text = render_text(watch_render([row]))
    assert "6/10" in text and "0.4/s" in text and "0m10s" in text
    assert not watch.all_finished()


async def test_a_finished_submission_stays_a_while_with_its_outcome(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=100)
    sub = await world.accept("two.jsonl", request_lines(2))
    await world.submitter.run_once()
    watch = Watch(world.store, keep_s=60, clock=world.clock.now)
    assert [r.state for r in await watch.rows()] == ["pending"]

    [job] = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", failing={"r1"})
    world.clock.advance(10)
    await world.tracker.run_once()
    await world.collector.run_once()
    [row] = await watch.rows()
    assert (row.state, row.finished, row.failed) == ("completed_with_errors", True, 1)
    assert "completed_with_errors" in render_text(watch_render([row]))
    assert watch.all_finished() and watch.exit_code() == 4  # --exit: by outcome
    assert await watch_loop(world.store, 0.01, exit_when_done=True, keep_s=1e9) == 4

    world.clock.advance(61)
    assert await watch.rows() == []
    assert watch.exit_code() == 4  # still remembered for --exit


def test_rate_needs_two_samples_and_progress():
    assert rate_and_eta(deque([(0.0, 0)]), 10) == (None, None)
    assert rate_and_eta(deque([(0.0, 5), (10.0, 5)]), 10) == (0.0, None)
    assert rate_and_eta(deque([(0.0, 0), (4.0, 8)]), 10) == (2.0, 5.0)
    assert fmt_eta(3725) == "1h02m" and fmt_eta(None) == "-"


def render_text(renderable: object) -> str:
    return render(renderable)


async def test_piped_the_watch_prints_its_last_frame_as_tab_separated_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``batchd jobs watch --exit | cat`` used to print one 80-column table with every name
    cut ("submis…", "a-rath…"): piped, it is the last frame as tab-separated rows in full."""
    world = World(tmp_path, max_requests=100)
    name = "a-rather-long-name-that-a-table-would-cut.jsonl"
    sub = await world.accept(name, request_lines(3))
    await world.submitter.run_once()
    [job] = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", failing={"r1"})
    await world.tracker.run_once()
    await world.collector.run_once()
    capsys.readouterr()
    assert await watch_loop(world.store, 0.01, exit_when_done=True, keep_s=1e9) == 4
    header, row = capsys.readouterr().out.splitlines()
    assert header.split("\t") == ["id", "name", "done", "requests", "failed", "rate", "eta_s",
                                  "state"]  # fmt: skip
    assert row.split("\t") == [sub.id, f"{name} (chat)", "3", "3", "1", "", "",
                               "completed_with_errors"]  # fmt: skip
