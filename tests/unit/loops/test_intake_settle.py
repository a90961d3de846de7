"""Issue 13 item 2: a file that changes after it was claimed (its writer still holds it open in
processing/) is never submitted as it was read: batchd waits until it is stable and reads it
again, or rejects it with a reason that says it was still being written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd import batchfile, validate
from batchd.chunks import FileChanged
from batchd.errors import Problem
from batchd.models import SubmissionState
from batchd.settle import (
    MAX_REREADS,
    READ,
    WRITE_WAIT_MAX_S,
    GiveUp,
    SettleGate,
    Unsettled,
    Wait,
    after_change,
    when_to_read,
)
from batchd.writers import WriterCheck, open_for_writing
from tests.unit.loops.conftest import World, request_lines


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = World(tmp_path)
    # no cache: the unit tests' passes are microseconds apart
    world.claimer.settle = SettleGate(world.clock, WriterCheck(max_age_s=0.0))
    return world


def write_in_place(world: World, name: str, content: str, *, age_s: float = 10.0) -> Path:
    """A file written in place whose last write was ``age_s`` ago: intake's rule lets it in."""
    path = world.paths.inbox / name
    path.write_text(content)
    old = world.clock.now() - age_s
    os.utime(path, (old, old))
    return path


async def passes(world: World, n: int, step_s: float = 1.0) -> None:
    for _ in range(n):
        await world.intake.run_once()
        world.clock.advance(step_s)


def test_the_rule() -> None:
    now = 1_000.0
    first = {"now": now, "mtime_s": now - 5, "settle_s": 2.0}
    assert when_to_read(**first, writing=None, unsettled=None) == READ
    assert when_to_read(**first, writing=False, unsettled=None) == READ
    assert when_to_read(**first, writing=True, unsettled=None) == Wait(now + 1)
    since = Unsettled(since=now - 10)
    assert when_to_read(now=now, mtime_s=now - 1, writing=False, unsettled=since, settle_s=2) == (
        Wait(now + 1)  # changed a second ago: stable only at mtime + settle_s
    )
    assert when_to_read(now=now, mtime_s=now - 3, writing=None, unsettled=since, settle_s=2) == READ
    late = Unsettled(since=now - WRITE_WAIT_MAX_S)
    gave_up = when_to_read(now=now, mtime_s=now - 1, writing=True, unsettled=late, settle_s=2)
    assert isinstance(gave_up, GiveUp) and "still being written" in gave_up.reason
    assert after_change(Unsettled(now, changes=1), now=now) == Wait(now + 1)
    assert isinstance(after_change(Unsettled(now, changes=MAX_REREADS), now=now), GiveUp)


def test_writers_are_seen_through_proc(tmp_path: Path) -> None:
    held, closed = tmp_path / "held.jsonl", tmp_path / "closed.jsonl"
    closed.write_text("x")
    with held.open("a") as handle, closed.open("rb"):
        handle.write("x")
        assert open_for_writing(tmp_path) == frozenset({os.path.realpath(held)})
    assert open_for_writing(tmp_path) == frozenset()
    assert open_for_writing(tmp_path, proc=str(tmp_path / "no-proc")) is None


async def test_a_writer_holding_the_claimed_file_open_is_waited_for(world: World) -> None:
    path = write_in_place(world, "slow.jsonl", request_lines(1, "a"))
    with path.open("a") as writer, capture_logs() as logs:  # open, pausing > min_age_s
        await passes(world, 6)
        assert [e["event"] for e in logs].count("intake.still_being_written") == 1  # said once
        [sub] = await world.store.list_submissions()
        assert sub.state is SubmissionState.CLAIMED  # claimed, but not read while held
        assert world.claimer.settle.waiting(sub.id)
        writer.write(request_lines(2, "b"))  # the writer goes on, in processing/
    await passes(world, 6)
    [sub] = await world.store.list_submissions()
    assert (sub.state, sub.line_count) == (SubmissionState.ACTIVE, 3)  # all of it
    assert [j.line_count for j in await world.jobs(sub.id)] == [3]
    assert await world.events() == ["submission.accepted"]


async def test_a_file_that_changed_while_it_was_read_is_read_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_parse = batchfile.parse_batch_file
    reads = 0

    def parse_then_append(path: Path, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        parsed = real_parse(path, **kwargs)
        if reads == 1:  # a writer nobody can see appends while batchd reads
            with path.open("a") as handle:
                handle.write(request_lines(2, "late"))
        return parsed

    monkeypatch.setattr(validate, "parse_batch_file", parse_then_append)
    world.drop("moving.jsonl", request_lines(1))
    await passes(world, 2, step_s=3.0)  # seen, then claimed and read
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.CLAIMED and reads == 1
    assert not world.work.submission(sub.id).exists()  # the chunks of the first read are gone
    await passes(world, 2, step_s=3.0)  # min_age_s after the last write, it is read again
    [sub] = await world.store.list_submissions()
    assert (sub.state, sub.line_count, reads) == (SubmissionState.ACTIVE, 3, 2)


async def test_a_file_that_keeps_changing_is_rejected_as_still_being_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def changed(*_args: Any, **_kwargs: Any) -> int:
        raise FileChanged([Problem(2, "the file changed after it was validated")])

    monkeypatch.setattr(validate, "write_chunk", changed)
    world.drop("moving.jsonl", request_lines(3))
    await passes(world, 30)
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.REJECTED
    reason = (world.paths.rejected / "moving.reason.txt").read_text()
    detail = f"it changed while batchd read it, {MAX_REREADS} times"
    assert f"still being written after batchd claimed it ({detail})" in reason
    assert "rename it into the inbox" in reason
    assert not world.work.submission(sub.id).exists()


async def test_a_file_held_open_for_too_long_is_rejected(world: World) -> None:
    path = write_in_place(world, "held.jsonl", request_lines(1))
    with path.open("a"):
        await passes(world, 4)
        world.clock.advance(WRITE_WAIT_MAX_S)
        await passes(world, 2)
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.REJECTED
    assert "still being written" in (sub.reason or "")
    assert (world.paths.rejected / "held.jsonl").read_text() == request_lines(1)


async def test_a_renamed_in_file_is_not_checked_for_writers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_scan(_folder: Path) -> frozenset[str]:
        raise AssertionError("a renamed-in file is complete by the contract")

    world.claimer.settle = SettleGate(world.clock, WriterCheck(scan=no_scan))
    world.intake._note_renamed(world.paths.inbox, "fast.jsonl")
    world.drop("fast.jsonl", request_lines(2))
    await world.intake.run_once()  # taken on sight, read at once
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.ACTIVE


def test_a_scan_made_before_the_file_moved_in_is_not_reused(tmp_path: Path) -> None:
    scans: list[Path] = []

    def scan(folder: Path) -> frozenset[str]:
        scans.append(folder)
        return frozenset()

    check = WriterCheck(max_age_s=60.0, scan=scan)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("x")
    assert check.is_open_for_writing(first) is False
    assert check.is_open_for_writing(first) is False  # the same scan answers
    assert len(scans) == 1
    second.write_text("y")  # arrives after the scan (its ctime; a rename into processing/ too)
    assert check.is_open_for_writing(second) is False
    assert len(scans) == 2
