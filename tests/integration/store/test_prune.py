"""Behaviour suite, housekeeping: ``prune`` removes only finished history, counts before it
deletes, keeps every reference valid; ``compact`` gives space back (every store)."""

from __future__ import annotations

from pathlib import Path

from batchd.models import JobState, Outcome
from batchd.store.base import DeliveryState, DuplicateJob, EventSpec, JobStore, PruneCounts
from batchd.store.sqlite import SqliteJobStore

from .conftest import NOW, accepted, settle, snapshot

DAY = 86_400.0


async def finished(store: JobStore, name: str, *, now: float) -> str:
    sub, jobs = await accepted(store, 2, name=name, now=now, sha256=name.encode().hex())
    for job in jobs:
        await settle(store, job, now=now)
    await store.finish_submission(sub.id, Outcome.SUCCEEDED, now=now, event=EventSpec("x"))
    return sub.id


async def deliver_all(store: JobStore, *, now: float) -> None:
    for event in await store.unfanned_events(limit=10_000):
        await store.fan_out(event.id, ["hook"], now=now)
    for delivery in await store.due_deliveries(now=now + 10 * DAY, limit=10_000):
        await store.record_delivery(
            delivery.event_id,
            delivery.endpoint,
            now=now,
            state=DeliveryState.DELIVERED,
            status=200,
            error=None,
            next_attempt_at=None,
        )


async def test_prune_counts_first_and_then_removes_old_finished_history(store: JobStore) -> None:
    old = await finished(store, "old.jsonl", now=NOW)
    new = await finished(store, "new.jsonl", now=NOW + 20 * DAY)
    active, _ = await accepted(store, 1, name="open.jsonl", now=NOW, sha256="cd" * 32)
    await deliver_all(store, now=NOW + 20 * DAY)
    cutoff = NOW + 10 * DAY

    before = await snapshot(store)
    would = await store.prune(events_before=cutoff, rows_before=cutoff, apply=False)
    assert await snapshot(store) == before  # a dry run changes nothing
    # old: accepted + 2 jobs x 2 transitions... every event of the old submission and the
    # active one's accepted event are older than the cutoff and delivered.
    old_events = [e for e in before["events"] if e.created_at < cutoff]
    assert would == PruneCounts(
        submissions=1, jobs=2, events=len(old_events), deliveries=len(old_events)
    )

    done = await store.prune(events_before=cutoff, rows_before=cutoff, apply=True)
    assert done == would
    assert await store.get_submission(old) is None
    assert await store.jobs_for_submission(old) == []
    assert await store.get_submission(new) is not None
    assert await store.get_submission(active.id) is not None  # open: never removed
    assert all(e.created_at >= cutoff for e in await store.list_events(limit=10_000))
    assert await store.prune(events_before=cutoff, rows_before=cutoff, apply=True) == PruneCounts()


async def test_prune_keeps_events_still_to_deliver_and_the_rows_they_refer_to(
    store: JobStore,
) -> None:
    old = await finished(store, "old.jsonl", now=NOW)
    for event in await store.unfanned_events(limit=10_000):
        await store.fan_out(event.id, ["hook"], now=NOW)  # PENDING deliveries
    later = NOW + 30 * DAY
    counts = await store.prune(events_before=later, rows_before=later, apply=True)
    assert counts == PruneCounts()
    assert await store.get_submission(old) is not None

    await deliver_all(store, now=later)
    counts = await store.prune(events_before=later, rows_before=later, apply=True)
    assert (counts.submissions, counts.jobs) == (1, 2)


async def test_prune_without_cutoffs_keeps_everything(store: JobStore) -> None:
    await finished(store, "old.jsonl", now=NOW)
    await deliver_all(store, now=NOW)
    before = await snapshot(store)
    counts = await store.prune(events_before=None, rows_before=None, apply=True)
    assert counts == PruneCounts()
    assert await snapshot(store) == before


async def test_rows_stay_while_their_events_are_kept(store: JobStore) -> None:
    old = await finished(store, "old.jsonl", now=NOW)
    await deliver_all(store, now=NOW)
    counts = await store.prune(events_before=None, rows_before=NOW + DAY, apply=True)
    assert counts == PruneCounts()  # its events are kept for ever: so is the row
    assert await store.get_submission(old) is not None


async def test_compact_returns_a_byte_count(store: JobStore) -> None:
    await finished(store, "old.jsonl", now=NOW)
    await deliver_all(store, now=NOW)
    await store.prune(events_before=NOW + DAY, rows_before=NOW + DAY, apply=True)
    assert await store.compact() >= 0
    assert await store.compact(full=True) >= 0
    assert await store.get_submission("sub_nope") is None  # still usable afterwards


async def test_compact_gives_the_space_of_pruned_history_back_to_the_file(tmp_path: Path) -> None:
    """Not only a number: the file on disk is smaller once pruned history is compacted and
    the database closed (the write-ahead log checkpointed), and a full rewrite keeps it so."""
    path = tmp_path / "batchd.db"
    store = SqliteJobStore(path)
    await store.open()
    try:
        for i in range(60):
            await finished(store, f"old-{i}.jsonl", now=NOW)
        await deliver_all(store, now=NOW)
        await store.close()
        full_size = path.stat().st_size
        await store.open()
        await store.prune(events_before=NOW + DAY, rows_before=NOW + DAY, apply=True)
        freed = await store.compact()
        assert freed > 0
        await store.close()
        assert path.stat().st_size <= full_size - freed // 2
        await store.open()
        assert await store.compact(full=True) >= 0
        assert await store.integrity_check() == []
    finally:
        await store.close()


async def test_prune_removes_the_duplicates_recorded_for_a_removed_submission(
    store: JobStore,
) -> None:
    old = await finished(store, "old.jsonl", now=NOW)
    (job, *_) = await store.jobs_for_submission(old)
    dup = DuplicateJob(
        provider_job_id="dup-1",
        provider="p",
        job_id=job.id,
        submission_id=old,
        kept_provider_job_id=job.provider_job_id,
        state=JobState.CANCELLED,
        raw_status="CANCELLED",
        cancelled=True,
        requests_completed=0,
        found_at=NOW,
    )
    assert await store.record_duplicate(dup, event=EventSpec("batch.duplicate_cancelled"))
    await deliver_all(store, now=NOW)
    later = NOW + 30 * DAY
    counts = await store.prune(events_before=later, rows_before=later, apply=True)
    assert (counts.submissions, counts.jobs) == (1, 2)
    assert await store.duplicates(submission_id=old) == []
    assert await store.duplicates() == []
