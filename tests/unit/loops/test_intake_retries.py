"""Issue 13 items 1 and 10: a file whose claim or validation keeps failing ends in rejected/
after a bounded number of tries (one traceback, not one per scan), and a folder in the inbox is
logged once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd import batchfile, claims, validate
from batchd.models import SubmissionState
from batchd.retries import MAX_TRIES, RetryBook, retry_delay_s
from batchd.store.base import NewSubmission
from tests.unit.loops.conftest import World, processing_of, request_lines


async def passes(world: World, n: int, step_s: float = 3.0) -> None:
    for _ in range(n):
        await world.intake.run_once()
        world.clock.advance(step_s)


def test_retry_book_backs_off_and_counts_failures_in_a_row() -> None:
    book = RetryBook(max_tries=3)
    assert book.due("k", 0.0)
    assert book.failed("k", 0.0) == 1
    assert not book.due("k", 1.9) and book.due("k", 2.0)
    assert book.failed("k", 2.0) == 2
    assert book.next_at("k") == 6.0
    book.forget("k")
    assert book.due("k", 2.1) and book.next_at("k") is None
    assert [retry_delay_s(n) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 60.0]


async def test_a_claim_that_keeps_failing_is_rejected_after_bounded_tries(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def broken(new: NewSubmission, *, now: float) -> Any:
        calls.append(new.name)
        raise ValueError("the database refuses this row")

    monkeypatch.setattr(world.store, "begin_claim", broken)
    world.drop("stuck.jsonl", request_lines(2))
    with capture_logs() as logs:
        await passes(world, 40)
    assert calls == ["stuck.jsonl"] * MAX_TRIES  # bounded, and spaced out (not every scan)
    assert list(world.paths.inbox.iterdir()) == []
    assert (world.paths.rejected / "stuck.jsonl").read_text() == request_lines(2)
    reason = (world.paths.rejected / "stuck.reason.txt").read_text()
    assert f"failed {MAX_TRIES} times" in reason
    assert "ValueError: the database refuses this row" in reason
    failures = [e for e in logs if e["event"] == "intake.claim_failed"]
    assert [e["tries"] for e in failures] == list(range(1, MAX_TRIES + 1))
    assert [e.get("exc_info", False) for e in failures] == [True] + [False] * (MAX_TRIES - 1)


async def test_a_claimed_file_whose_validation_keeps_failing_is_rejected(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_parse = batchfile.parse_batch_file
    calls = 0

    def parse(path: Path, **kwargs: Any) -> Any:
        nonlocal calls
        if path.name.endswith("bad.jsonl"):
            calls += 1
            raise RuntimeError("a bug in the parser")
        return real_parse(path, **kwargs)

    monkeypatch.setattr(validate, "parse_batch_file", parse)
    world.drop("bad.jsonl", request_lines(1, "x"))
    world.drop("good.jsonl", request_lines(1, "y"))
    await passes(world, 40)
    assert calls == MAX_TRIES
    subs = {s.name: s for s in await world.store.list_submissions()}
    assert subs["good.jsonl"].state is SubmissionState.ACTIVE
    bad = subs["bad.jsonl"]
    assert bad.state is SubmissionState.REJECTED
    assert "RuntimeError: a bug in the parser" in (bad.reason or "")
    assert (world.paths.rejected / "bad.jsonl").read_text() == request_lines(1, "x")
    assert [p.name for p in world.paths.processing.iterdir()] == [
        processing_of(subs["good.jsonl"]).name
    ]
    assert await world.events() == ["submission.accepted", "submission.rejected"]


async def test_a_file_that_cannot_even_be_moved_aside_is_left_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(new: NewSubmission, *, now: float) -> Any:
        raise OSError("disk full")

    def no_move(*_args: Any) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(world.store, "begin_claim", broken)
    monkeypatch.setattr(claims, "move_aside", no_move)
    world.drop("stuck.jsonl", request_lines(1))
    with capture_logs() as logs:
        await passes(world, 60)
    assert [e["event"] for e in logs].count("intake.claim_failed") == MAX_TRIES
    assert [e["event"] for e in logs].count("intake.give_up_failed") == 1
    assert (world.paths.inbox / "stuck.jsonl").exists()


async def test_a_folder_named_like_a_batch_file_is_logged_once(world: World) -> None:
    (world.paths.inbox / "x.jsonl").mkdir()
    with capture_logs() as logs:
        await passes(world, 5)
    ignored = [e for e in logs if e["event"] == "intake.folder_ignored"]
    assert len(ignored) == 1
    assert ignored[0]["name"] == "x.jsonl"
    assert "a folder, not a batch file" in ignored[0]["reason"]
    assert await world.store.list_submissions() == []
    (world.paths.inbox / "x.jsonl").rmdir()
    await passes(world, 1)
    (world.paths.inbox / "x.jsonl").mkdir()  # a new folder: said again
    with capture_logs() as again:
        await passes(world, 3)
    assert [e["event"] for e in again].count("intake.folder_ignored") == 1
