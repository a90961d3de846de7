"""Issue 13 items 1 and 9 with the real SQLite store: a name that is not UTF-8, or that carries
a newline or a terminal escape, is rejected under a safe name and never printed raw."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from batchd.folder_origin import FolderOrigin
from batchd.models import SubmissionState
from batchd.store.sqlite import SqliteJobStore
from tests.unit.loops.conftest import World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteJobStore(tmp_path / "batchd.sqlite3")
    await store.open()
    yield World(tmp_path, store=store)
    await store.close()


def drop_bytes_name(world: World, name: bytes, content: str) -> None:
    fd = os.open(os.fsencode(world.paths.inbox) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


async def passes(world: World, n: int = 4) -> None:
    for _ in range(n):
        await world.intake.run_once()
        world.clock.advance(3)


async def test_a_name_that_is_not_utf8_is_rejected_under_a_safe_name(world: World) -> None:
    drop_bytes_name(world, b"bad\xffname.jsonl", '{"body": {}}\n')
    with capture_logs() as logs:
        await passes(world)
    assert os.listdir(os.fsencode(world.paths.inbox)) == []
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.REJECTED
    assert sub.name == "bad\\xffname.jsonl"  # escaped: printable, and storable
    stem = f"unnamed-{sub.id[-6:]}"
    assert sorted(os.listdir(world.paths.rejected)) == [f"{stem}.jsonl", f"{stem}.reason.txt"]
    reason = (world.paths.rejected / f"{stem}.reason.txt").read_text()
    assert reason.splitlines()[0] == "bad\\xffname.jsonl: rejected, 1 problem"
    assert "file name not allowed" in reason
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    events = await world.store.list_events(limit=10)
    assert [e.data["name"] for e in events] == ["bad\\xffname.jsonl"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"x\nline 1: forged.jsonl", "x\\x0aline 1: forged.jsonl"),
        (b"\x1b]0;owned\x07\x1b[2J.jsonl", "\\x1b]0;owned\\x07\\x1b[2J.jsonl"),
        ("\u202eevil.jsonl".encode(), "\\u202eevil.jsonl"),
    ],
)
async def test_a_newline_or_escape_in_a_name_is_escaped_wherever_it_is_written(
    world: World, raw: bytes, shown: str
) -> None:
    drop_bytes_name(world, raw, '{"body": {}}\n')
    await passes(world)
    [sub] = await world.store.list_submissions()
    assert (sub.state, sub.name) == (SubmissionState.REJECTED, shown)
    reason_file = world.paths.rejected / f"unnamed-{sub.id[-6:]}.reason.txt"
    lines = reason_file.read_text().splitlines()
    assert lines == [f"{shown}: rejected, 1 problem", sub.reason]
    assert all(ch.isprintable() for line in lines for ch in line)
    [event] = await world.store.list_events(limit=10)
    assert event.data["name"] == shown


async def test_a_raw_name_stored_before_names_were_escaped_is_read_escaped(world: World) -> None:
    from batchd.store.base import NewSubmission

    raw = "old\x1b[2J\nline 1: forged.jsonl"
    await world.store.begin_claim(
        NewSubmission(
            route="chat",
            name=raw,
            provider="fake",
            endpoint="/v1/chat/completions",
            model="m",
            timeout_hours=24,
            metadata={},
            size_bytes=1,
            origin=FolderOrigin(
                host=None,
                inbox=str(world.paths.inbox / "x"),
                processing=str(world.paths.processing / "1.jsonl"),
                dev=0,
                ino=1,
            ).to_json(),
        ),
        now=world.clock.now(),
    )
    [sub] = await world.store.list_submissions()
    assert sub.name == "old\\x1b[2J\\x0aline 1: forged.jsonl"  # what the CLI and events show
