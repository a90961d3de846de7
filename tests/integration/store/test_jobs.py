"""Behaviour suite, jobs: compare-and-set transitions, the transition table, fields, lists."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from batchd.errors import StaleState, StoreError
from batchd.models import (
    ACTIVE,
    LOCAL,
    TERMINAL,
    JobState,
    RequestCounts,
    ResultState,
    can_transition,
)
from batchd.store.base import EventSpec, JobStore, StoreStats

from .conftest import NOW, accepted, drive, new_submission, settle, snapshot


async def test_transition_sets_fields_and_appends_its_event(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    creating = await store.transition_job(job.id, JobState.NEW, JobState.CREATING, now=NOW + 1)
    event = EventSpec("batch.created", {"job_id": job.id, "state": "pending"})

    pending = await store.transition_job(
        job.id,
        JobState.CREATING,
        JobState.PENDING,
        now=NOW + 2,
        event=event,
        provider_job_id="prov-1",
        raw_status="QUEUED",
        counts=RequestCounts(total=10),
        next_attempt_at=NOW + 30,
    )

    assert pending == replace(
        creating,
        state=JobState.PENDING,
        provider_job_id="prov-1",
        raw_status="QUEUED",
        counts=RequestCounts(total=10),
        next_attempt_at=NOW + 30,
        updated_at=NOW + 2,
        version=creating.version + 1,  # every change bumps it
    )
    assert await store.get_job(job.id) == pending
    last = (await store.list_events())[-1]
    assert (last.type, last.data, last.submission_id, last.job_id, last.created_at) == (
        "batch.created",
        {"job_id": job.id, "state": "pending"},
        sub.id,
        job.id,
        NOW + 2,
    )


async def test_stale_expected_state_changes_nothing_and_appends_nothing(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    before = await snapshot(store)

    with pytest.raises(StaleState) as err:
        await store.transition_job(
            job.id,
            JobState.CREATING,
            JobState.PENDING,
            now=NOW + 1,
            event=EventSpec("batch.created"),
            provider_job_id="prov-1",
        )
    assert (err.value.expected, err.value.actual) == (JobState.CREATING, JobState.NEW)
    assert await snapshot(store) == before


async def test_unknown_job_is_a_store_error(store: JobStore) -> None:
    with pytest.raises(StoreError) as err:
        await store.transition_job("job_missing", JobState.NEW, JobState.CREATING, now=NOW)
    assert not isinstance(err.value, StaleState)


async def test_the_whole_transition_table(store: JobStore) -> None:
    """Every (old, new) pair: allowed ones apply, forbidden ones raise StoreError (not
    StaleState) and leave the job as it was. ``new == old`` is a field update, always allowed."""
    pairs = [(old, new) for old in JobState for new in JobState]
    _, jobs = await accepted(store, len(pairs))
    for (old, new), job in zip(pairs, jobs, strict=True):
        ready = await drive(store, job, old)
        if new is old or can_transition(old, new):
            moved = await store.transition_job(job.id, old, new, now=NOW + 1, last_error="x")
            assert (moved.state, moved.last_error) == (new, "x")
        else:
            with pytest.raises(StoreError) as err:
                await store.transition_job(job.id, old, new, now=NOW + 1, event=EventSpec("x"))
            assert not isinstance(err.value, StaleState)
            assert await store.get_job(job.id) == ready
    assert [e.type for e in await store.list_events()] == ["submission.accepted"]


async def test_same_state_updates_fields_even_when_terminal(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    done = await drive(store, job, JobState.CANCELLED)
    updated = await store.transition_job(
        job.id,
        JobState.CANCELLED,
        JobState.CANCELLED,
        now=NOW + 50,
        result_state=ResultState.COLLECTED,
        collected_at=NOW + 50,
        errors=({"code": 1, "message": "x"},),
    )
    assert updated == replace(
        done,
        result_state=ResultState.COLLECTED,
        collected_at=NOW + 50,
        errors=({"code": 1, "message": "x"},),
        updated_at=NOW + 50,
        version=done.version + 1,
    )
    assert await store.get_job(job.id) == updated


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
async def test_entering_terminal_sets_terminal_at_and_results_pending(
    store: JobStore, terminal: JobState
) -> None:
    _, [job] = await accepted(store, 1)
    running = await drive(store, job, JobState.RUNNING)
    assert (running.terminal_at, running.result_state) == (None, ResultState.NONE)

    ended = await store.transition_job(job.id, JobState.RUNNING, terminal, now=NOW + 7)
    assert (ended.terminal_at, ended.result_state) == (NOW + 7, ResultState.PENDING)


async def test_entering_terminal_keeps_a_given_result_state(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    creating = await drive(store, job, JobState.CREATING)
    ended = await store.transition_job(
        job.id, creating.state, JobState.LOST, now=NOW + 7, result_state=ResultState.UNAVAILABLE
    )
    assert (ended.terminal_at, ended.result_state) == (NOW + 7, ResultState.UNAVAILABLE)


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "job_other"},
        {"submission_id": "sub_other"},
        {"chunk_index": 5},
        {"state": JobState.RUNNING},
        {"no_such_field": 1},
        {"attempts": "three"},
        {"next_attempt_at": "soon"},
        {"provider_job_id": 12},
        {"line_count": None},
        {"counts": {"total": 1}},
        {"result_state": "nonsense"},
        {"errors": [1, 2]},
    ],
)
async def test_invalid_fields_are_refused(store: JobStore, fields: dict[str, Any]) -> None:
    _, [job] = await accepted(store, 1)
    before = await snapshot(store)
    with pytest.raises(StoreError):
        await store.transition_job(job.id, JobState.NEW, JobState.CREATING, now=NOW, **fields)
    assert await snapshot(store) == before


async def test_field_values_read_back_as_stored(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    moved = await store.transition_job(
        job.id,
        JobState.NEW,
        JobState.NEW,
        now=NOW,
        next_attempt_at=NOW + 5,  # an int would read back as a float
        attempts=3,
        errors=[{"line": 1, "detail": ("a", "b")}],  # tuples read back as lists
        result_state="none",
        cancel_requested=1,
    )
    assert moved.errors == ({"line": 1, "detail": ["a", "b"]},)
    assert moved.cancel_requested is True
    assert moved.result_state is ResultState.NONE
    assert await store.get_job(job.id) == moved


async def test_find_job_by_local_or_provider_id(store: JobStore) -> None:
    _, [a, b] = await accepted(store, 2)
    await drive(store, a, JobState.CREATING)
    a = await store.transition_job(
        a.id, JobState.CREATING, JobState.PENDING, now=NOW, provider_job_id="prov-a"
    )

    assert await store.find_job(a.id) == a
    assert await store.find_job("prov-a") == a
    assert await store.find_job(b.id) == b
    assert await store.find_job("prov-zzz") is None
    assert await store.get_job("prov-a") is None


async def test_jobs_for_submission_in_chunk_order(store: JobStore) -> None:
    sub, jobs = await accepted(store, 4)
    await accepted(store, 2, name="other.jsonl")
    assert [j.chunk_index for j in await store.jobs_for_submission(sub.id)] == [0, 1, 2, 3]
    assert await store.jobs_for_submission(sub.id) == jobs
    assert await store.jobs_for_submission("sub_missing") == []


async def test_list_jobs_filters_and_order(store: JobStore) -> None:
    _, jobs = await accepted(store, 6)
    due = [NOW + 5, NOW + 1, NOW + 3, NOW + 1, NOW + 9, NOW + 2]
    states = [
        JobState.RUNNING,
        JobState.PENDING,
        JobState.NEW,
        JobState.RUNNING,
        JobState.SUCCEEDED,
        JobState.FAILED,
    ]
    for job, state, when in zip(jobs, states, due, strict=True):
        await drive(store, job, state)
        await store.transition_job(job.id, state, state, now=NOW, next_attempt_at=when)
    await store.transition_job(
        jobs[5].id, JobState.FAILED, JobState.FAILED, now=NOW, result_state=ResultState.COLLECTED
    )

    def ids(found: list[Any]) -> list[int]:
        return [j.chunk_index for j in found]

    everything = await store.list_jobs()
    tie = sorted([jobs[1], jobs[3]], key=lambda j: j.id)
    assert ids(everything) == [*(j.chunk_index for j in tie), 5, 2, 0, 4]
    assert ids(await store.list_jobs(states=sorted(ACTIVE))) == [j.chunk_index for j in tie] + [0]
    assert ids(await store.list_jobs(states=sorted(ACTIVE), due_before=NOW + 1)) == [
        j.chunk_index for j in tie
    ]
    assert ids(await store.list_jobs(states=sorted(LOCAL), due_before=NOW + 3)) == [2]
    assert ids(await store.list_jobs(due_before=NOW + 2, limit=2)) == [j.chunk_index for j in tie]
    assert ids(await store.list_jobs(result_pending=True)) == [4]
    assert await store.list_jobs(provider="openai") == []
    assert len(await store.list_jobs(provider="mistral")) == 6
    assert await store.list_jobs(states=[]) == []
    assert await store.list_jobs(limit=0) == []
    assert await store.list_jobs(cancel_requested=True) == []
    assert len(await store.list_jobs(cancel_requested=False)) == 6


async def test_list_jobs_by_cancel_request(store: JobStore) -> None:
    sub, jobs = await accepted(store, 2)
    await accepted(store, 1, name="other.jsonl")
    await store.request_cancel(sub.id, now=NOW, event=EventSpec("submission.cancel_requested"))
    found = await store.list_jobs(cancel_requested=True, states=[JobState.NEW])
    assert sorted(j.id for j in found) == sorted(j.id for j in jobs)


async def test_reschedule_jobs_moves_only_next_attempt_at(store: JobStore) -> None:
    """(and bumps the version, as every change does)"""
    _, jobs = await accepted(store, 3)
    running = await drive(store, jobs[0], JobState.RUNNING, now=NOW + 1)

    changed = await store.reschedule_jobs(
        [jobs[0].id, jobs[1].id, jobs[0].id, "job_missing"], NOW + 60
    )

    assert changed == 2
    assert await store.get_job(jobs[0].id) == replace(
        running, next_attempt_at=NOW + 60, version=running.version + 1
    )
    assert await store.get_job(jobs[1].id) == replace(
        jobs[1], next_attempt_at=NOW + 60, version=jobs[1].version + 1
    )
    assert await store.get_job(jobs[2].id) == jobs[2]
    assert await store.reschedule_jobs([], NOW) == 0


async def test_stats_counts_open_work(store: JobStore) -> None:
    assert await store.stats() == StoreStats()
    await store.begin_claim(new_submission(), now=NOW)
    _, jobs = await accepted(store, 3, name="b.jsonl")
    await drive(store, jobs[0], JobState.RUNNING)
    await drive(store, jobs[1], JobState.FAILED)  # results pending
    await settle(store, jobs[2])
    events = await store.list_events()
    await store.fan_out(events[0].id, ["hook-a", "hook-b"], now=NOW)

    assert await store.stats() == StoreStats(
        open_submissions=2,
        open_jobs=1,
        pending_downloads=1,
        undelivered_events=len(events) - 1 + 2,
    )


async def test_concurrent_compare_and_set_has_one_winner(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    await drive(store, job, JobState.RUNNING)

    async def finish(i: int) -> str:
        try:
            await store.transition_job(
                job.id,
                JobState.RUNNING,
                JobState.SUCCEEDED,
                now=NOW + i,
                event=EventSpec("batch.succeeded", {"by": i}),
            )
        except StaleState:
            return "stale"
        return "won"

    results = await asyncio.gather(*(finish(i) for i in range(20)))
    assert sorted(results) == ["stale"] * 19 + ["won"]
    assert [e.type for e in await store.list_events()].count("batch.succeeded") == 1


async def test_many_concurrent_writers_all_commit(store: JobStore) -> None:
    _, jobs = await accepted(store, 25)

    async def move(i: int) -> None:
        job = jobs[i]
        await store.transition_job(
            job.id,
            JobState.NEW,
            JobState.UPLOADED,
            now=NOW,
            event=EventSpec("t.uploaded", {"i": i}),
        )

    async def note(i: int) -> None:
        await store.append_event(EventSpec("t.note", {"i": i}), now=NOW)

    await asyncio.gather(*(move(i) for i in range(25)), *(note(i) for i in range(25)))

    events = await store.list_events()
    assert sorted(e.data["i"] for e in events if e.type == "t.uploaded") == list(range(25))
    assert sorted(e.data["i"] for e in events if e.type == "t.note") == list(range(25))
    assert {j.state for j in await store.list_jobs()} == {JobState.UPLOADED}
    assert len({e.id for e in events}) == len(events) == 51
