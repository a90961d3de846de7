"""Issue 4, with the real processes: whatever lands in an inbox ends in done/<name>/ or in
rejected/<name>.jsonl with a reason, with the right submission and job rows and outbox events.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from batchd.models import JobState, Outcome, ResultState, Submission, SubmissionState
from tests.acceptance.harness import Harness, RouteSpec, chat_lines, read_jsonl

MAX_FILE_BYTES = 4000
MAX_REQUESTS_PER_JOB = 3


def custom_ids(path: Path) -> list[str]:
    return [record["custom_id"] for record in read_jsonl(path)]


async def start_daemon(harness: Harness, **intake: object) -> None:
    harness.start_emulator()
    harness.configure(
        [RouteSpec("chat")],
        intake={"max_file_bytes": MAX_FILE_BYTES, **intake},
        provider={"max_requests_per_job": MAX_REQUESTS_PER_JOB},
    )
    await harness.start()


async def assert_done(harness: Harness, name: str, requests: int, chunks: int) -> Submission:
    sub = await harness.wait_done(name)
    assert sub.outcome is Outcome.SUCCEEDED
    assert (sub.line_count, sub.chunk_count) == (requests, chunks)
    done = harness.spool("chat").done / name.removesuffix(".jsonl")
    assert sub.results_dir == str(done)
    assert sorted(p.name for p in done.iterdir()) == [
        "errors.jsonl",
        "input.jsonl",
        "results.jsonl",
        "summary.json",
    ]
    assert custom_ids(done / "results.jsonl") == custom_ids(done / "input.jsonl")
    assert len(custom_ids(done / "results.jsonl")) == requests
    jobs = await harness.jobs(sub.id)
    assert [(j.chunk_index, j.state, j.result_state) for j in jobs] == [
        (i, JobState.SUCCEEDED, ResultState.COLLECTED) for i in range(chunks)
    ]
    assert all(j.provider_job_id for j in jobs)
    types = await harness.event_types(sub.id)
    assert types[0] == "submission.accepted"
    assert types[-1] == "results.ready"
    assert types.count("batch.created") == chunks
    assert types.count("batch.succeeded") == chunks
    return sub


async def assert_rejected(harness: Harness, name: str, stored_as: str | None = None) -> str:
    """The entry is in rejected/ with its reason file, the row is REJECTED with one
    ``submission.rejected`` event; returns the text of the reason file."""
    sub = await harness.wait_submission(name, [SubmissionState.REJECTED])
    rejected = harness.spool("chat").rejected
    stem = (stored_as or name).removesuffix(".jsonl")
    moved = rejected / f"{stem}.jsonl"
    assert os.path.lexists(moved), sorted(p.name for p in rejected.iterdir())
    reason = (rejected / f"{stem}.reason.txt").read_text()
    events = await harness.events(sub.id)
    assert [e.type for e in events] == ["submission.rejected"]
    assert events[0].data["rejected_path"] == str(moved)
    assert events[0].data["reason"] == sub.reason
    assert sub.reason is not None and sub.reason in reason
    assert await harness.jobs(sub.id) == []
    return reason


async def test_each_kind_of_dropped_file_ends_where_it_should(harness: Harness) -> None:
    await start_daemon(harness)
    chat = harness.spool("chat")
    outside = harness.root / "outside.jsonl"
    outside.write_text(chat_lines(2, "o"))

    harness.drop("chat", "valid.jsonl", chat_lines(3, "v"))
    harness.drop("chat", "split.jsonl", chat_lines(7, "s"))  # 3 + 3 + 1
    bad = chat_lines(1, "b") + '{"custom_id": "b1", "body": \n' + chat_lines(1, "c")
    harness.drop("chat", "invalid.jsonl", bad)
    harness.drop("chat", "oversize.jsonl", chat_lines(60, "x"))  # about 7 kB
    harness.drop("chat", "bad name.jsonl", chat_lines(1, "n"))
    os.symlink(outside, chat.inbox / "link.jsonl")
    os.mkfifo(chat.inbox / "fifo.jsonl")
    os.link(outside, chat.inbox / "hard.jsonl")

    await assert_done(harness, "valid.jsonl", requests=3, chunks=1)
    split = await assert_done(harness, "split.jsonl", requests=7, chunks=3)
    jobs = await harness.jobs(split.id)
    assert [(j.line_start, j.line_count) for j in jobs] == [(0, 3), (3, 3), (6, 1)]
    assert custom_ids(Path(split.results_dir or "") / "results.jsonl") == [
        f"s{i}" for i in range(7)
    ]

    reason = await assert_rejected(harness, "invalid.jsonl")
    assert any(line.startswith("line 2:") for line in reason.splitlines())
    assert "over the limit" in await assert_rejected(harness, "oversize.jsonl")
    assert "symbolic link" in await assert_rejected(harness, "link.jsonl")
    assert "FIFO" in await assert_rejected(harness, "fifo.jsonl")
    assert "hard link" in await assert_rejected(harness, "hard.jsonl")
    bad_name = await harness.submission("bad name.jsonl")
    assert bad_name is not None
    await assert_rejected(harness, "bad name.jsonl", stored_as=f"unnamed-{bad_name.id[-6:]}.jsonl")

    assert (chat.rejected / "link.jsonl").is_symlink()
    assert outside.read_text() == chat_lines(2, "o")  # the link's target is never touched
    assert list(chat.inbox.iterdir()) == []
    assert list(chat.processing.iterdir()) == []
    await harness.stop()


async def test_file_written_in_place_is_taken_only_once_complete(harness: Harness) -> None:
    # Pauses between writes longer than the two-scan look (0.5 s) but shorter than min_age_s:
    # only the age rule keeps the half-written file out.
    min_age_s, pause_s = 2.0, 0.7
    await start_daemon(harness, min_age_s=min_age_s)
    content = chat_lines(12, "w").encode()
    target = harness.spool("chat").inbox / "slow.jsonl"
    size = len(content) // 5 + 1
    pieces = [content[i : i + size] for i in range(0, len(content), size)]  # lines cut mid-way
    started = time.time()
    for piece in pieces:
        with target.open("ab") as handle:
            handle.write(piece)
        await asyncio.sleep(pause_s)
    last_write = target.stat().st_mtime
    assert last_write - started > min_age_s

    sub = await harness.wait_submission(
        "slow.jsonl", [SubmissionState.DONE, SubmissionState.REJECTED]
    )
    assert (sub.state, sub.line_count, sub.reason) == (SubmissionState.DONE, 12, None)
    assert sub.created_at >= last_write + min_age_s - 0.05  # claimed only once it was stable
    store = await harness.store()
    assert [s.name for s in await store.list_submissions()] == ["slow.jsonl"]
    done = Path(sub.results_dir or "")
    assert (done / "input.jsonl").read_bytes() == content
    assert custom_ids(done / "results.jsonl") == [f"w{i}" for i in range(12)]
    await harness.stop()


async def test_batchd_submit_copies_into_the_inbox_and_the_daemon_finishes_it(
    harness: Harness,
) -> None:
    await start_daemon(harness)
    source = harness.root / "mine.jsonl"
    source.write_text(chat_lines(4, "m"))
    code, out, err = await harness.cli(
        "submit", "--config", str(harness.config_path), str(source), "--route", "chat"
    )
    assert code == 0, err
    assert out.strip() == str(harness.spool("chat").inbox / "mine.jsonl")
    sub = await assert_done(harness, "mine.jsonl", requests=4, chunks=2)
    summary = json.loads((Path(sub.results_dir or "") / "summary.json").read_text())
    assert summary["counts"] == {"requests": 4, "succeeded": 4, "failed": 0, "missing": 0}
    assert source.exists()  # submit copies; the original stays with the user

    broken = harness.root / "broken.jsonl"
    broken.write_text('{"custom_id": "a"}\n')
    code, _, _ = await harness.cli("submit", "--config", str(harness.config_path), str(broken))
    assert code == 7  # rejected, as the daemon would
    assert not (harness.spool("chat").inbox / "broken.jsonl").exists()
    await harness.stop()


async def test_file_dropped_while_stopped_is_picked_up_at_start_up(harness: Harness) -> None:
    await start_daemon(harness)
    await harness.stop()
    harness.drop("chat", "offline.jsonl", chat_lines(2, "f"))
    old = time.time() - 3600
    os.utime(harness.spool("chat").inbox / "offline.jsonl", (old, old))
    await harness.start()
    await assert_done(harness, "offline.jsonl", requests=2, chunks=1)
    await harness.stop()


async def test_a_writer_pausing_longer_than_min_age_loses_nothing(harness: Harness) -> None:
    # Issue 13 item 2's recipe: write 1 line, wait 2.5 s with min_age_s = 1, write 2 more, the
    # writer holding the file open all along. batchd may claim the file during the pause; what
    # it submits must be all three lines, never the first one alone.
    await start_daemon(harness, min_age_s=1.0)
    content = chat_lines(3, "p")
    first, rest = content.split("\n", 1)
    target = harness.spool("chat").inbox / "paused.jsonl"
    with target.open("w") as writer:
        writer.write(first + "\n")
        writer.flush()
        await asyncio.sleep(2.5)
        writer.write(rest)
    sub = await harness.wait_submission(
        "paused.jsonl", [SubmissionState.DONE, SubmissionState.REJECTED]
    )
    assert (sub.state, sub.line_count) == (SubmissionState.DONE, 3)
    done = Path(sub.results_dir or "")
    assert (done / "input.jsonl").read_text() == content
    assert custom_ids(done / "results.jsonl") == ["p0", "p1", "p2"]
    store = await harness.store()
    assert [s.name for s in await store.list_submissions()] == ["paused.jsonl"]
    await harness.stop()


async def test_hostile_names_and_folders_end_with_a_reason_not_a_loop(harness: Harness) -> None:
    # Issue 13 items 1, 9 and 10 against the real daemon: a name that is not UTF-8, a name with
    # a newline and a terminal escape, and a folder named like a batch file.
    await start_daemon(harness)
    chat = harness.spool("chat")
    for raw in (b"bad\xffname.jsonl", b"x\n\x1b[2Jline 1: forged.jsonl"):
        path = os.fsencode(chat.inbox) + b"/" + raw
        with open(path, "wb") as handle:
            handle.write(b'{"body": {}}\n')
    (chat.inbox / "folder.jsonl").mkdir()
    store = await harness.store()

    async def both_rejected() -> bool:
        subs = await store.list_submissions(states=[SubmissionState.REJECTED])
        return len(subs) == 2

    await harness.wait_until(both_rejected, "both files rejected")
    await asyncio.sleep(2.5)  # a few more scans: nothing is tried again
    names = sorted(s.name for s in await store.list_submissions())
    assert names == ["bad\\xffname.jsonl", "x\\x0a\\x1b[2Jline 1: forged.jsonl"]
    reasons = sorted(p for p in os.listdir(chat.rejected) if p.endswith(".reason.txt"))
    headers = sorted((chat.rejected / p).read_text().splitlines()[0] for p in reasons)
    assert headers == [f"{n}: rejected, 1 problem" for n in names]
    assert os.listdir(os.fsencode(chat.inbox)) == [b"folder.jsonl"]
    assert harness.logged("intake.claim_failed") == []
    assert len(harness.logged("intake.folder_ignored")) == 1
    for args in (["jobs", "list"], ["jobs", "show", names[1]], ["events", "list"]):
        code, out, err = await harness.cli(*args, "--config", str(harness.config_path))
        assert code == 0, err
        assert "\x1b" not in out + err and "\ufffd" not in out + err  # nothing raw on a terminal
        assert args[0] == "events" or names[1] in out  # the name, escaped
    await harness.stop()
