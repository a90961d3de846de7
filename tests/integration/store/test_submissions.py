"""Behaviour suite, submissions: claim, accept, reject, finish, cancel, lists (every store)."""

from __future__ import annotations

from dataclasses import replace
from unittest.mock import ANY

import pytest

from batchd.errors import StaleState, StoreError
from batchd.models import (
    Job,
    JobState,
    Outcome,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.store.base import ChunkPlan, EventSpec, JobStore

from .conftest import (
    NOW,
    accepted,
    chunks,
    claimed,
    drive,
    new_submission,
    origin,
    settle,
    snapshot,
)

ACCEPTED = EventSpec("submission.accepted", {"n": 1})


async def test_begin_claim_records_a_claiming_submission_without_event(store: JobStore) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)

    assert sub == Submission(
        id=ANY,
        route="r1",
        name="a.jsonl",
        state=SubmissionState.CLAIMING,
        provider="mistral",
        endpoint="/v1/chat/completions",
        model="mistral-small-latest",
        timeout_hours=24,
        metadata={"team": "search"},
        size_bytes=1234,
        origin=origin("a.jsonl"),
        created_at=NOW,
    )
    assert sub.id.startswith("sub_")
    assert await store.get_submission(sub.id) == sub
    assert await store.list_events() == []


async def test_begin_claim_refuses_metadata_that_is_not_strings(store: JobStore) -> None:
    with pytest.raises(StoreError):
        await store.begin_claim(new_submission(metadata={"n": 1}), now=NOW)
    assert await store.list_submissions() == []


async def test_mark_claimed_is_compare_and_set(store: JobStore) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)
    done = await store.mark_claimed(sub.id, now=NOW + 1)
    assert done == replace(sub, state=SubmissionState.CLAIMED, version=sub.version + 1)

    before = await snapshot(store)
    with pytest.raises(StaleState) as err:
        await store.mark_claimed(sub.id, now=NOW + 2)
    assert (err.value.expected, err.value.actual) == ("claiming", SubmissionState.CLAIMED)
    assert await snapshot(store) == before


async def test_unknown_submission_is_a_store_error_not_stale(store: JobStore) -> None:
    with pytest.raises(StoreError) as err:
        await store.mark_claimed("sub_missing", now=NOW)
    assert not isinstance(err.value, StaleState)
    assert await store.get_submission("sub_missing") is None


async def test_abandon_appends_its_event_in_the_same_change(store: JobStore) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)
    await store.abandon_submission(sub.id, "vanished", now=NOW + 5)

    assert await store.get_submission(sub.id) == replace(
        sub,
        state=SubmissionState.ABANDONED,
        reason="vanished",
        finished_at=NOW + 5,
        version=sub.version + 1,
    )
    [event] = await store.list_events()
    assert (event.type, event.submission_id, event.job_id, event.created_at) == (
        "submission.abandoned",
        sub.id,
        None,
        NOW + 5,
    )
    assert event.data == {
        "submission_id": sub.id,
        "route": "r1",
        "name": "a.jsonl",
        "reason": "vanished",
    }


async def test_abandon_only_from_claiming(store: JobStore) -> None:
    sub = await claimed(store)
    before = await snapshot(store)
    with pytest.raises(StaleState):
        await store.abandon_submission(sub.id, "vanished", now=NOW)
    assert await snapshot(store) == before


async def test_accept_inserts_one_new_job_per_chunk_with_its_event(store: JobStore) -> None:
    sub = await claimed(store)
    plan = [ChunkPlan(1, 5, 3, 300), ChunkPlan(0, 0, 5, 500)]  # any order in, index order out
    jobs = await store.accept_submission(
        sub.id,
        sha256="cd" * 32,
        line_count=8,
        results_dir="/spool/done/a",
        chunks=plan,
        now=NOW + 1,
        event=ACCEPTED,
    )

    expected = [
        Job(
            id=ANY,
            submission_id=sub.id,
            chunk_index=i,
            provider="mistral",
            state=JobState.NEW,
            line_start=start,
            line_count=count,
            byte_count=size,
            next_attempt_at=NOW + 1,
            created_at=NOW + 1,
            updated_at=NOW + 1,
        )
        for i, start, count, size in [(0, 0, 5, 500), (1, 5, 3, 300)]
    ]
    assert jobs == expected
    assert all(j.id.startswith("job_") for j in jobs) and len({j.id for j in jobs}) == 2
    assert await store.jobs_for_submission(sub.id) == jobs
    assert await store.get_submission(sub.id) == replace(
        sub,
        state=SubmissionState.ACTIVE,
        sha256="cd" * 32,
        line_count=8,
        results_dir="/spool/done/a",
        chunk_count=2,
        accepted_at=NOW + 1,
        version=sub.version + 1,
    )
    [event] = await store.list_events()
    assert (event.type, event.data, event.submission_id, event.job_id) == (
        "submission.accepted",
        {"n": 1},
        sub.id,
        None,
    )


async def test_accept_refused_changes_nothing(store: JobStore) -> None:
    pending = await store.begin_claim(new_submission(), now=NOW)
    sub = await claimed(store, name="b.jsonl")
    before = await snapshot(store)

    with pytest.raises(StaleState):
        await store.accept_submission(
            pending.id,
            sha256="x",
            line_count=1,
            results_dir="/d",
            chunks=chunks(1),
            now=NOW,
            event=ACCEPTED,
        )
    duplicate = [ChunkPlan(0, 0, 1, 1), ChunkPlan(0, 1, 1, 1)]
    with pytest.raises(StoreError):
        await store.accept_submission(
            sub.id,
            sha256="x",
            line_count=2,
            results_dir="/d",
            chunks=duplicate,
            now=NOW,
            event=ACCEPTED,
        )
    with pytest.raises(StoreError):  # the event cannot be serialised: the whole change fails
        await store.accept_submission(
            sub.id,
            sha256="x",
            line_count=1,
            results_dir="/d",
            chunks=chunks(1),
            now=NOW,
            event=EventSpec("submission.accepted", {"bad": object()}),
        )
    assert await snapshot(store) == before


@pytest.mark.parametrize("claim_first", [False, True])
async def test_reject_from_claiming_or_claimed(store: JobStore, claim_first: bool) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)
    if claim_first:
        sub = await store.mark_claimed(sub.id, now=NOW)
    event = EventSpec("submission.rejected", {"reason": "line 3: bad"})
    await store.reject_submission(sub.id, "line 3: bad", now=NOW + 2, event=event)

    assert await store.get_submission(sub.id) == replace(
        sub,
        state=SubmissionState.REJECTED,
        reason="line 3: bad",
        finished_at=NOW + 2,
        version=sub.version + 1,
    )
    [stored] = await store.list_events()
    assert (stored.type, stored.submission_id) == ("submission.rejected", sub.id)


async def test_reject_refused_once_active(store: JobStore) -> None:
    sub, _ = await accepted(store)
    before = await snapshot(store)
    with pytest.raises(StaleState):
        await store.reject_submission(sub.id, "late", now=NOW, event=EventSpec("x"))
    assert await snapshot(store) == before


async def test_finish_waits_for_every_job_to_settle(store: JobStore) -> None:
    sub, jobs = await accepted(store, 2)
    await settle(store, jobs[0])
    ended = await drive(store, jobs[1], JobState.FAILED)  # terminal, results still PENDING
    before = await snapshot(store)
    done_event = EventSpec("submission.done", {"outcome": "partial"})

    with pytest.raises(StaleState):
        await store.finish_submission(sub.id, Outcome.PARTIAL, now=NOW + 9, event=done_event)
    assert await snapshot(store) == before

    await store.transition_job(
        ended.id, ended.state, ended.state, now=NOW, result_state=ResultState.UNAVAILABLE
    )
    done = await store.finish_submission(sub.id, Outcome.PARTIAL, now=NOW + 9, event=done_event)
    assert done == replace(
        sub,
        state=SubmissionState.DONE,
        outcome=Outcome.PARTIAL,
        finished_at=NOW + 9,
        version=sub.version + 1,
    )
    assert await store.get_submission(sub.id) == done
    last = (await store.list_events())[-1]
    assert (last.type, last.submission_id, last.data) == (
        "submission.done",
        sub.id,
        {"outcome": "partial"},
    )

    with pytest.raises(StaleState):
        await store.finish_submission(sub.id, Outcome.PARTIAL, now=NOW + 10, event=done_event)


async def test_request_cancel_marks_open_jobs_and_is_idempotent(store: JobStore) -> None:
    sub, jobs = await accepted(store, 3)
    finished = await drive(store, jobs[0], JobState.SUCCEEDED)
    running = await drive(store, jobs[1], JobState.RUNNING)
    event = EventSpec("submission.cancel_requested", {"submission_id": sub.id})

    first = await store.request_cancel(sub.id, now=NOW + 3, event=event)
    assert first == replace(sub, cancel_requested_at=NOW + 3, version=sub.version + 1)
    by_id = {j.id: j for j in await store.jobs_for_submission(sub.id)}
    assert by_id[finished.id] == finished  # terminal: untouched
    assert by_id[running.id] == replace(
        running, cancel_requested=True, updated_at=NOW + 3, version=running.version + 1
    )
    assert by_id[jobs[2].id] == replace(
        jobs[2], cancel_requested=True, updated_at=NOW + 3, version=jobs[2].version + 1
    )
    events = await store.list_events()
    assert [(e.type, e.submission_id) for e in events[-1:]] == [
        ("submission.cancel_requested", sub.id)
    ]

    before = await snapshot(store)
    again = await store.request_cancel(sub.id, now=NOW + 4, event=event)
    assert again == first
    assert await snapshot(store) == before


async def test_cancel_of_a_claimed_submission_carries_into_its_jobs(store: JobStore) -> None:
    sub = await claimed(store)
    await store.request_cancel(sub.id, now=NOW + 1, event=EventSpec("submission.cancel_requested"))
    jobs = await store.accept_submission(
        sub.id,
        sha256="x",
        line_count=10,
        results_dir="/d",
        chunks=chunks(1),
        now=NOW + 2,
        event=ACCEPTED,
    )
    assert [j.cancel_requested for j in jobs] == [True]
    assert await store.jobs_for_submission(sub.id) == jobs


async def test_request_cancel_refused_when_not_claimed_or_active(store: JobStore) -> None:
    claiming = await store.begin_claim(new_submission(name="c.jsonl"), now=NOW)
    rejected = await claimed(store, name="r.jsonl")
    await store.reject_submission(
        rejected.id, "bad", now=NOW, event=EventSpec("submission.rejected")
    )
    done, [job] = await accepted(store, 1, name="d.jsonl")
    await settle(store, job)
    await store.finish_submission(
        done.id, Outcome.SUCCEEDED, now=NOW, event=EventSpec("submission.done")
    )
    before = await snapshot(store)

    for sub in (claiming, rejected, done):
        with pytest.raises(StaleState):
            await store.request_cancel(
                sub.id, now=NOW + 1, event=EventSpec("submission.cancel_requested")
            )
    assert await snapshot(store) == before


async def test_list_submissions_newest_first_with_filters(store: JobStore) -> None:
    old = await store.begin_claim(new_submission(name="old.jsonl"), now=NOW)
    same_a = await store.begin_claim(new_submission(name="a.jsonl", route="r2"), now=NOW + 1)
    same_b = await claimed(store, now=NOW + 1, name="b.jsonl")  # same time: later insert first

    assert [s.id for s in await store.list_submissions()] == [same_b.id, same_a.id, old.id]
    assert [s.id for s in await store.list_submissions(limit=2)] == [same_b.id, same_a.id]
    claiming = await store.list_submissions(states=[SubmissionState.CLAIMING])
    assert [s.id for s in claiming] == [same_a.id, old.id]
    assert [s.id for s in await store.list_submissions(route="r2")] == [same_a.id]
    both = await store.list_submissions(states=[SubmissionState.CLAIMED], route="r1")
    assert [s.id for s in both] == [same_b.id]
    assert await store.list_submissions(states=[]) == []
    assert await store.list_submissions(limit=0) == []


async def test_list_submissions_pages_with_an_after_cursor(store: JobStore) -> None:
    old = await store.begin_claim(new_submission(name="old.jsonl"), now=NOW)
    same_a = await store.begin_claim(new_submission(name="a.jsonl"), now=NOW + 1)
    same_b = await store.begin_claim(new_submission(name="b.jsonl"), now=NOW + 1)

    assert [s.id for s in await store.list_submissions(after=same_b.id)] == [same_a.id, old.id]
    assert [s.id for s in await store.list_submissions(after=same_a.id, limit=1)] == [old.id]
    assert await store.list_submissions(after=old.id) == []
    assert await store.list_submissions(after="sub_unknown") == []


async def test_find_duplicate_wants_active_or_done_same_route_newest(store: JobStore) -> None:
    sha = "ee" * 32
    first, _ = await accepted(store, 1, sha256=sha, name="1.jsonl", now=NOW)
    second, _ = await accepted(store, 1, sha256=sha, name="2.jsonl", now=NOW + 1)
    other_route, _ = await accepted(store, 1, sha256=sha, route="r2", name="3.jsonl", now=NOW + 2)
    await claimed(store, name="4.jsonl", now=NOW + 3)  # no sha yet

    assert await store.find_duplicate("r1", sha) == second
    assert await store.find_duplicate("r2", sha) == other_route
    assert await store.find_duplicate("r1", "ff" * 32) is None
    assert await store.find_duplicate("r3", sha) is None
    assert first.state is SubmissionState.ACTIVE


async def test_find_duplicate_ignores_runs_that_did_not_succeed(store: JobStore) -> None:
    sha = "cd" * 32
    for outcome, name in [(Outcome.FAILED, "f"), (Outcome.PARTIAL, "p"), (Outcome.CANCELLED, "c")]:
        sub, [job] = await accepted(store, 1, sha256=sha, name=f"{name}.jsonl")
        await settle(store, job)
        await store.finish_submission(sub.id, outcome, now=NOW, event=EventSpec("submission.done"))
    assert await store.find_duplicate("r1", sha) is None  # dropping it again is a retry

    good, [job] = await accepted(store, 1, sha256=sha, name="s.jsonl")
    await settle(store, job)
    await store.finish_submission(
        good.id, Outcome.SUCCEEDED, now=NOW + 1, event=EventSpec("submission.done")
    )
    found = await store.find_duplicate("r1", sha)
    assert found is not None and found.id == good.id


async def test_find_duplicate_counts_a_run_answered_with_some_errors(store: JobStore) -> None:
    """Every request answered (some with an error): dropping it again would pay twice."""
    sha = "ce" * 32
    sub, [job] = await accepted(store, 1, sha256=sha)
    await settle(store, job)
    await store.finish_submission(
        sub.id, Outcome.COMPLETED_WITH_ERRORS, now=NOW, event=EventSpec("submission.done")
    )
    found = await store.find_duplicate("r1", sha)
    assert found is not None and found.id == sub.id


async def test_finish_keeps_the_result_counts_and_usage(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    await settle(store, job)
    counts = ResultCounts(4990, 10, 0, {"prompt_tokens": 12, "total_tokens": 20})
    done = await store.finish_submission(
        sub.id,
        Outcome.COMPLETED_WITH_ERRORS,
        now=NOW,
        event=EventSpec("submission.done"),
        results=counts,
    )
    assert done.results == counts
    assert await store.get_submission(sub.id) == done
    assert (await store.list_submissions())[0].results == counts


async def test_finish_refuses_negative_counts(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    await settle(store, job)
    before = await snapshot(store)
    with pytest.raises(StoreError):
        await store.finish_submission(
            sub.id,
            Outcome.SUCCEEDED,
            now=NOW,
            event=EventSpec("submission.done"),
            results=ResultCounts(-1, 0, 0),
        )
    assert await snapshot(store) == before


async def test_find_duplicate_ignores_rejected(store: JobStore) -> None:
    sub = await claimed(store)
    await store.reject_submission(sub.id, "dup", now=NOW, event=EventSpec("submission.rejected"))
    assert await store.find_duplicate("r1", "ab" * 32) is None


async def test_results_dir_taken_by_active_submissions_only(store: JobStore) -> None:
    active, _ = await accepted(store, 1, name="a.jsonl")
    done, [job] = await accepted(store, 1, name="b.jsonl")
    await settle(store, job)
    await store.finish_submission(
        done.id, Outcome.SUCCEEDED, now=NOW, event=EventSpec("submission.done")
    )

    assert await store.results_dir_taken("/spool/done/a.jsonl")
    assert not await store.results_dir_taken("/spool/done/b.jsonl")
    assert not await store.results_dir_taken("/spool/done/c.jsonl")
    assert active.results_dir == "/spool/done/a.jsonl"


async def test_returned_values_are_copies(store: JobStore) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)
    sub.metadata["team"] = "changed"
    fetched = await store.get_submission(sub.id)
    assert fetched is not None and fetched.metadata == {"team": "search"}


async def test_finish_records_where_the_results_ended_up(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    await settle(store, job)
    done = await store.finish_submission(
        sub.id,
        Outcome.SUCCEEDED,
        now=NOW,
        event=EventSpec("submission.done"),
        results_dir="/spool/done/a.jsonl.sub_1",
    )
    assert done.results_dir == "/spool/done/a.jsonl.sub_1"
    assert await store.get_submission(sub.id) == done


async def test_move_results_of_a_done_submission_only(store: JobStore) -> None:
    active, _ = await accepted(store, 1, name="a.jsonl")
    with pytest.raises(StaleState):
        await store.move_results(active.id, "/spool/done/elsewhere")
    done, [job] = await accepted(store, 1, name="b.jsonl")
    await settle(store, job)
    await store.finish_submission(
        done.id, Outcome.SUCCEEDED, now=NOW, event=EventSpec("submission.done")
    )
    before = await store.list_events()
    moved = await store.move_results(done.id, f"/spool/done/b.{done.id}")
    assert moved.results_dir == f"/spool/done/b.{done.id}"
    assert await store.get_submission(done.id) == moved
    assert await store.list_events() == before  # no event: the folder moved, nothing happened
    with pytest.raises(StoreError):
        await store.move_results(done.id, "")
    with pytest.raises(StoreError):
        await store.move_results("sub_nope", "/x")
