from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from batchd import batchfile, spool, validate
from batchd.claims import RouteLike
from batchd.folder_origin import FolderOrigin
from batchd.intake import Sighting, is_complete
from batchd.models import Job, JobState, Submission, SubmissionState
from batchd.spool import GROUP_READABLE
from batchd.store.memory import MemoryJobStore
from tests.unit.loops.conftest import World, processing_of, request_lines


def test_completeness_rule() -> None:
    old = 1_700_000_000 * 10**9
    first = Sighting(10, old, 1, seen_at=1_700_000_100.0)
    same = Sighting(10, old, 1, seen_at=1_700_000_101.0)
    assert is_complete(None, first, now=1_700_000_100.0, min_age_s=2, renamed=True)
    assert not is_complete(None, first, now=1_700_000_100.0, min_age_s=2, renamed=False)
    assert is_complete(first, same, now=1_700_000_101.0, min_age_s=2, renamed=False)
    grown = Sighting(11, old, 1, seen_at=1_700_000_101.0)
    assert not is_complete(first, grown, now=1_700_000_101.0, min_age_s=2, renamed=False)
    fresh = Sighting(10, int(1_700_000_100.5 * 1e9), 1, seen_at=1_700_000_101.0)
    assert not is_complete(
        Sighting(10, fresh.mtime_ns, 1, seen_at=1_700_000_100.0),
        fresh,
        now=1_700_000_101.0,
        min_age_s=2,
        renamed=False,
    )
    too_soon = Sighting(10, old, 1, seen_at=1_700_000_100.1)
    assert not is_complete(first, too_soon, now=1_700_000_100.1, min_age_s=2, renamed=False)


async def test_valid_file_is_claimed_split_and_accepted(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=4)
    sub = await world.accept("ten.jsonl", request_lines(10))
    assert sub.state is SubmissionState.ACTIVE
    jobs = await world.jobs(sub.id)
    assert [(j.line_start, j.line_count) for j in jobs] == [(0, 4), (4, 4), (8, 2)]
    assert all(j.state is JobState.NEW for j in jobs)
    assert not list(world.paths.inbox.iterdir())
    assert [p.name for p in world.paths.processing.iterdir()] == [processing_of(sub).name]
    assert world.work.chunk(sub.id, 2).read_text().count("\n") == 2
    assert await world.events() == ["submission.accepted"]


async def test_invalid_file_goes_to_rejected_with_reasons(world: World) -> None:
    content = request_lines(2) + "not json\n" + '{"custom_id": "r0", "body": {}}\n'
    sub = await world.accept("bad.jsonl", content)
    assert sub.state is SubmissionState.REJECTED
    assert (world.paths.rejected / "bad.jsonl").read_text() == content
    reason = (world.paths.rejected / "bad.reason.txt").read_text()
    assert "line 3:" in reason
    assert "line 4:" in reason
    assert await world.events() == ["submission.rejected"]
    assert not list(world.paths.processing.iterdir())


async def test_symlink_fifo_and_hard_link_are_rejected(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text(request_lines(1))
    (world.paths.inbox / "link.jsonl").symlink_to(outside)
    os.mkfifo(world.paths.inbox / "pipe.jsonl")
    os.link(outside, world.paths.inbox / "hard.jsonl")
    for _ in range(3):
        await world.intake.run_once()
        world.clock.advance(3)
    subs = {s.name: s for s in await world.store.list_submissions()}
    assert {n: s.state for n, s in subs.items()} == {
        "link.jsonl": SubmissionState.REJECTED,
        "pipe.jsonl": SubmissionState.REJECTED,
        "hard.jsonl": SubmissionState.REJECTED,
    }
    assert "symbolic link" in (subs["link.jsonl"].reason or "")
    assert "FIFO" in (subs["pipe.jsonl"].reason or "")
    assert "hard link" in (subs["hard.jsonl"].reason or "")
    assert (world.paths.rejected / "link.jsonl").is_symlink()
    assert outside.read_text() == request_lines(1)  # the target was never touched


async def test_dotfiles_and_part_files_are_ignored(world: World) -> None:
    (world.paths.inbox / ".hidden.jsonl").write_text(request_lines(1))
    (world.paths.inbox / "upload.jsonl.part").write_text(request_lines(1))
    for _ in range(3):
        await world.intake.run_once()
        world.clock.advance(10)
    assert await world.store.list_submissions() == []


async def test_file_written_in_place_waits_for_stability(world: World) -> None:
    target = world.paths.inbox / "slow.jsonl"
    target.write_text(request_lines(1))
    os.utime(target, (world.clock.now(), world.clock.now()))
    await world.intake.run_once()  # first sighting: too young, seen once
    assert await world.store.list_submissions() == []
    world.clock.advance(1)
    with target.open("a") as handle:  # the writer is still writing
        handle.write(request_lines(2, prefix="x"))
    os.utime(target, (world.clock.now(), world.clock.now()))
    await world.intake.run_once()
    world.clock.advance(1)
    await world.intake.run_once()
    assert await world.store.list_submissions() == []  # changed or too young so far
    world.clock.advance(3)
    await world.intake.run_once()
    subs = await world.store.list_submissions()
    assert [s.line_count for s in subs] == [3]


async def test_same_content_twice_is_rejected_as_duplicate(world: World) -> None:
    first = await world.accept("a.jsonl", request_lines(3))
    second = await world.accept("b.jsonl", request_lines(3))
    assert first.state is SubmissionState.ACTIVE
    assert second.state is SubmissionState.REJECTED
    assert first.id in (second.reason or "")


async def test_every_run_of_a_name_is_headed_for_done_name(world: World) -> None:
    """The collector decides at the end which run stays at done/<name>/ (the newest)."""
    first = await world.accept("a.jsonl", request_lines(3))
    second = await world.accept("a.jsonl", request_lines(4))
    assert first.results_dir == second.results_dir == str(world.paths.done / "a")


async def test_restart_finishes_a_half_done_claim(world: World) -> None:
    path = world.drop("half.jsonl", request_lines(2))
    from batchd.store.base import NewSubmission

    ino = path.stat().st_ino
    sub = await world.store.begin_claim(
        NewSubmission(
            route="chat",
            name="half.jsonl",
            provider="fake",
            endpoint="/v1/chat/completions",
            model="m",
            timeout_hours=24,
            metadata={},
            size_bytes=path.stat().st_size,
            origin=FolderOrigin(
                host="bdtest",
                inbox=str(path),
                processing=str(world.paths.processing / f"{ino}-half.jsonl"),
                dev=0,
                ino=ino,
            ).to_json(),
        ),
        now=world.clock.now(),
    )
    # the process died here: the row is committed, the file is still in the inbox
    await world.intake.run_once()
    again = await world.store.get_submission(sub.id)
    assert again is not None and again.state is SubmissionState.ACTIVE
    assert len(await world.store.list_submissions()) == 1  # claimed once, not twice


async def passes(world: World, n: int = 3) -> int:
    """Intake passes far enough apart for the stability rule; how many files were taken."""
    taken = 0
    for _ in range(n):
        taken += await world.intake.run_once()
        world.clock.advance(3)
    return taken


class SlowDuplicateLookup(MemoryJobStore):
    """A store whose verbs yield, as the SQLite store's do (the answer travels back from the
    database thread): a duplicate check made apart from the accept would let two through."""

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        found = await super().find_duplicate(route, sha256)
        await asyncio.sleep(0.01)
        return found

    async def accept_submission(self, submission_id: str, **kwargs: Any) -> list[Job]:
        await asyncio.sleep(0.01)
        return await super().accept_submission(submission_id, **kwargs)


async def test_files_dropped_together_are_all_taken_in_one_pass(world: World) -> None:
    for i in range(20):
        world.drop(f"f{i:02}.jsonl", request_lines(2, prefix=f"f{i}-"))
    assert await passes(world) == 20
    subs = await world.store.list_submissions()
    assert sorted(s.name for s in subs) == [f"f{i:02}.jsonl" for i in range(20)]
    assert {s.state for s in subs} == {SubmissionState.ACTIVE}
    assert not list(world.paths.inbox.iterdir())


async def test_identical_files_dropped_together_are_still_deduplicated(tmp_path: Path) -> None:
    world = World(tmp_path, store=SlowDuplicateLookup())
    for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
        world.drop(name, request_lines(3))
    await passes(world)
    states = sorted(s.state for s in await world.store.list_submissions())
    assert states == [SubmissionState.ACTIVE, SubmissionState.REJECTED, SubmissionState.REJECTED]
    rejected = [s for s in await world.store.list_submissions() if s.reason]
    assert all(not world.work.submission(s.id).exists() for s in rejected)


async def test_two_intakes_on_one_store_accept_the_same_content_once(tmp_path: Path) -> None:
    """Two daemons sharing one store (each its own spool, one route name): the duplicate check
    is the store's, not a lock in one process, so only one of them accepts the content."""
    store = SlowDuplicateLookup()
    first, second = World(tmp_path / "a", store=store), World(tmp_path / "b", store=store)
    first.drop("a.jsonl", request_lines(3))
    second.drop("b.jsonl", request_lines(3))
    await asyncio.gather(passes(first), passes(second))
    subs = await store.list_submissions()
    assert sorted(s.state for s in subs) == [SubmissionState.ACTIVE, SubmissionState.REJECTED]
    [rejected] = [s for s in subs if s.state is SubmissionState.REJECTED]
    assert rejected.reason is not None and rejected.reason.startswith("duplicate: ")


async def test_a_failing_file_does_not_stop_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = world.claimer.claim

    async def flaky(route: RouteLike, name: str, **kwargs: Any) -> Submission | None:
        if name == "bad.jsonl":
            raise OSError("disk hiccup")
        return await claim(route, name, **kwargs)

    monkeypatch.setattr(world.claimer, "claim", flaky)
    world.drop("bad.jsonl", request_lines(1, prefix="x"))
    world.drop("good.jsonl", request_lines(1, prefix="y"))
    assert await passes(world) == 1
    assert [s.name for s in await world.store.list_submissions()] == ["good.jsonl"]
    assert (world.paths.inbox / "bad.jsonl").exists()  # untouched, taken on a later pass


async def test_rejection_reasons_follow_the_share_with_group_modes(world: World) -> None:
    world.claimer.configure(world.claimer._limits, reject_duplicates=True, modes=GROUP_READABLE)
    old = os.umask(0o077)
    try:
        sub = await world.accept("bad.jsonl", "not json\n")
    finally:
        os.umask(old)
    assert sub.state is SubmissionState.REJECTED
    assert (world.paths.rejected / "bad.reason.txt").stat().st_mode & 0o777 == 0o640


async def test_an_unreadable_file_is_rejected_with_the_fix_and_others_go_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = spool.open_dropped

    def open_dropped(directory: Path, name: str, *, max_bytes: int) -> tuple[int, Any]:
        if name.endswith("bad.jsonl"):  # a 0600 file of another user, as batchd sees it
            raise PermissionError(13, "Permission denied", name)
        return real_open(directory, name, max_bytes=max_bytes)

    monkeypatch.setattr(validate, "open_dropped", open_dropped)
    world.drop("bad.jsonl", request_lines(1, "x"))
    world.drop("good.jsonl", request_lines(1, "y"))
    await passes(world)
    states = {s.name: s.state for s in await world.store.list_submissions()}
    assert states == {"bad.jsonl": SubmissionState.REJECTED, "good.jsonl": SubmissionState.ACTIVE}
    reason = (world.paths.rejected / "bad.reason.txt").read_text()
    assert "permission denied" in reason
    assert "0640" in reason


async def test_a_claimed_file_that_keeps_failing_does_not_block_the_scan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_parse = batchfile.parse_batch_file

    def parse(path: Path, **kwargs: Any) -> Any:
        if path.name.endswith("bad.jsonl"):
            raise RuntimeError("a bug in the parser")
        return real_parse(path, **kwargs)

    monkeypatch.setattr(validate, "parse_batch_file", parse)
    world.drop("bad.jsonl", request_lines(1, "x"))
    await passes(world)  # claimed, then validation fails: it stays CLAIMED, resumed each pass
    world.drop("good.jsonl", request_lines(1, "y"))
    await passes(world)
    states = {s.name: s.state for s in await world.store.list_submissions()}
    assert states == {"bad.jsonl": SubmissionState.CLAIMED, "good.jsonl": SubmissionState.ACTIVE}


async def test_a_stale_renamed_flag_does_not_let_a_half_written_file_in(world: World) -> None:
    world.intake._note_renamed(world.paths.inbox, "x.jsonl")  # renamed in, removed at once
    await world.intake.run_once()
    (world.paths.inbox / "x.jsonl").write_text(request_lines(1))  # later: written in place
    assert await world.intake.run_once() == 0  # not taken on sight: the stability rule applies
    assert await world.store.list_submissions() == []
