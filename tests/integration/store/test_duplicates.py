"""Behaviour suite, duplicate provider jobs (issue 12) and the reconcile window's fields."""

from __future__ import annotations

from batchd.models import JobState
from batchd.store.base import DuplicateJob, EventSpec, JobStore

from .conftest import NOW, accepted


def duplicate(pid: str, **changes: object) -> DuplicateJob:
    values: dict[str, object] = {
        "provider_job_id": pid,
        "provider": "mistral",
        "job_id": None,
        "submission_id": None,
        "kept_provider_job_id": None,
        "state": JobState.PENDING,
        "raw_status": "QUEUED",
        "cancelled": True,
        "requests_completed": 0,
        "found_at": NOW,
    }
    return DuplicateJob(**{**values, **changes})  # type: ignore[arg-type]


async def test_a_duplicate_is_recorded_once_with_its_event(store: JobStore) -> None:
    sub, [job, _] = await accepted(store, 2)
    dup = duplicate(
        "prov-2",
        job_id=job.id,
        submission_id=sub.id,
        kept_provider_job_id="prov-1",
        state=JobState.SUCCEEDED,
        raw_status="SUCCESS",
        cancelled=False,
        requests_completed=7,
        found_at=NOW + 5,
    )
    event = EventSpec("batch.duplicate_cancelled", {"provider_job_id": "prov-2"})
    before = len(await store.list_events(limit=1000))

    assert await store.record_duplicate(dup, event=event) is True
    assert await store.record_duplicate(dup, event=event) is False  # noticed again: nothing

    events = (await store.list_events(limit=1000))[before:]
    assert [(e.type, e.submission_id, e.job_id, e.data) for e in events] == [
        ("batch.duplicate_cancelled", sub.id, job.id, {"provider_job_id": "prov-2"})
    ]
    assert events[0].created_at == NOW + 5
    assert await store.duplicates(submission_id=sub.id) == [dup]


async def test_duplicates_are_listed_oldest_first_and_by_submission(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    orphan = duplicate("prov-9", found_at=NOW + 9)  # its tag points at no job of this store
    mine = duplicate("prov-3", job_id=job.id, submission_id=sub.id, found_at=NOW + 3)
    for dup in (orphan, mine):
        await store.record_duplicate(dup, event=EventSpec("batch.duplicate_cancelled", {}))
    assert await store.duplicates() == [mine, orphan]
    assert await store.duplicates(submission_id=sub.id) == [mine]
    assert await store.duplicates(submission_id="sub_none") == []


async def test_the_reconcile_window_fields_are_kept(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    assert (job.reconcile_until, job.lookups) == (None, 0)
    creating = await store.transition_job(
        job.id, JobState.NEW, JobState.CREATING, now=NOW, reconcile_until=NOW + 180, lookups=2
    )
    again = await store.get_job(job.id)
    assert again == creating
    assert (again.reconcile_until, again.lookups) == (NOW + 180, 2)
