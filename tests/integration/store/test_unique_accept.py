"""The duplicate check belongs to the store: ``accept_submission(..., unique=True)`` refuses
content already accepted on the route in the accept's own transaction, so two intakes (tasks,
or processes on one database) can never both accept it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batchd.models import Outcome, SubmissionState
from batchd.store.base import DuplicateContent, EventSpec, JobStore
from batchd.store.sqlite import SqliteJobStore

from .conftest import NOW, accepted, chunks, claimed, settle, snapshot

SHA = "ab" * 32


async def accept(store: JobStore, sub_id: str, *, unique: bool = True) -> int:
    jobs = await store.accept_submission(
        sub_id,
        sha256=SHA,
        line_count=10,
        results_dir=f"/spool/done/{sub_id}",
        chunks=chunks(1),
        now=NOW,
        event=EventSpec("submission.accepted", {"submission_id": sub_id}),
        unique=unique,
    )
    return len(jobs)


async def test_content_already_accepted_is_refused_and_nothing_changes(store: JobStore) -> None:
    earlier, _ = await accepted(store, 1, sha256=SHA, name="a.jsonl")
    again = await claimed(store, name="b.jsonl")
    before = await snapshot(store)
    with pytest.raises(DuplicateContent) as info:
        await accept(store, again.id)
    assert info.value.earlier == earlier
    assert await snapshot(store) == before
    current = await store.get_submission(again.id)
    assert current is not None and current.state is SubmissionState.CLAIMED


async def test_unique_false_accepts_it_anyway(store: JobStore) -> None:
    await accepted(store, 1, sha256=SHA, name="a.jsonl")
    again = await claimed(store, name="b.jsonl")
    assert await accept(store, again.id, unique=False) == 1


async def test_a_run_that_did_not_succeed_does_not_count(store: JobStore) -> None:
    failed, [job] = await accepted(store, 1, sha256=SHA, name="a.jsonl")
    await settle(store, job)
    await store.finish_submission(
        failed.id, Outcome.FAILED, now=NOW, event=EventSpec("submission.done")
    )
    other_route = await claimed(store, name="c.jsonl", route="r2")
    again = await claimed(store, name="b.jsonl")
    assert await accept(store, again.id) == 1
    assert await accept(store, other_route.id) == 1  # duplicates are per route


async def test_concurrent_accepts_on_one_store_let_one_through(store: JobStore) -> None:
    subs = [await claimed(store, name=f"{i}.jsonl") for i in range(4)]
    outcomes = await asyncio.gather(*(accept(store, s.id) for s in subs), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["DuplicateContent"] * 3 + ["int"]


async def test_two_connections_to_one_database_let_one_through(tmp_path: Path) -> None:
    """Two processes on one SQLite file: the check runs inside the accept's BEGIN IMMEDIATE."""
    path = tmp_path / "batchd.db"
    one, two = SqliteJobStore(path), SqliteJobStore(path)
    await one.open()
    await two.open()
    try:
        subs = [await claimed(one, name=f"{i}.jsonl") for i in range(6)]
        stores = [one, two] * 3
        outcomes = await asyncio.gather(
            *(accept(s, sub.id) for s, sub in zip(stores, subs, strict=True)),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["DuplicateContent"] * 5 + ["int"]
        active = await two.list_submissions(states=[SubmissionState.ACTIVE])
        assert len(active) == 1
    finally:
        await one.close()
        await two.close()
