"""Named leases (``claim_task``, ``renew_task``, ``release_task``) and submission claims
(``claim_submission``, ``finish_submission(..., owner=...)``): the deployment-wide work one
instance does at a time, in every store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from batchd.models import JobState, Outcome, ResultState, SubmissionState
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LeaseLost
from batchd.store.sqlite import SqliteJobStore

from .conftest import NOW, accepted, drive, new_submission, snapshot

LEASE = 60.0
DONE = EventSpec("submission.done", {})


async def test_a_task_lease_is_held_by_one_owner_until_it_runs_out(store: JobStore) -> None:
    assert await store.claim_task("sweep:mistral", "a", LEASE, now=NOW)
    assert not await store.claim_task("sweep:mistral", "b", LEASE, now=NOW + 1)
    assert await store.claim_task("sweep:other", "b", LEASE, now=NOW + 1)  # another name
    assert await store.claim_task("sweep:mistral", "a", LEASE, now=NOW + 2)  # a keeps it
    assert not await store.claim_task("sweep:mistral", "b", LEASE, now=NOW + LEASE - 1)
    assert await store.claim_task("sweep:mistral", "b", LEASE, now=NOW + LEASE + 1)  # ran out
    assert not await store.claim_task("sweep:mistral", "a", LEASE, now=NOW + LEASE + 2)


async def test_claiming_renews_only_once_half_the_lease_is_gone(store: JobStore) -> None:
    assert await store.claim_task("kept", "a", LEASE, now=NOW)
    assert await store.claim_task("kept", "a", LEASE, now=NOW + LEASE / 2 - 1)  # not renewed
    assert await store.claim_task("kept", "b", LEASE, now=NOW + LEASE + 0.5)  # so it ran out

    assert await store.claim_task("renewed", "a", LEASE, now=NOW)
    assert await store.claim_task("renewed", "a", LEASE, now=NOW + LEASE / 2 + 1)  # renewed
    assert not await store.claim_task("renewed", "b", LEASE, now=NOW + LEASE + 0.5)
    assert await store.claim_task("renewed", "b", LEASE, now=NOW + 1.5 * LEASE + 2)


async def test_renew_extends_only_the_holders_lease(store: JobStore) -> None:
    assert not await store.renew_task("cancel:x", "a", LEASE, now=NOW)  # never taken
    assert await store.claim_task("cancel:x", "a", LEASE, now=NOW)
    assert await store.renew_task("cancel:x", "a", LEASE, now=NOW + LEASE - 1)
    assert not await store.claim_task("cancel:x", "b", LEASE, now=NOW + LEASE + 1)  # renewed
    assert not await store.renew_task("cancel:x", "b", LEASE, now=NOW + LEASE + 1)
    assert await store.renew_task("cancel:x", "a", LEASE, now=NOW + 3 * LEASE)  # nobody took it
    assert await store.claim_task("cancel:x", "b", LEASE, now=NOW + 4 * LEASE + 1)
    assert not await store.renew_task("cancel:x", "a", LEASE, now=NOW + 4 * LEASE + 2)


async def test_release_frees_the_lease_for_another_owner_at_once(store: JobStore) -> None:
    assert await store.claim_task("t", "a", LEASE, now=NOW)
    assert not await store.release_task("t", "b")  # not b's
    assert not await store.claim_task("t", "b", LEASE, now=NOW + 1)
    assert await store.release_task("t", "a")
    assert not await store.release_task("t", "a")  # already free
    assert await store.claim_task("t", "b", LEASE, now=NOW + 2)
    assert not await store.renew_task("t", "a", LEASE, now=NOW + 3)


async def test_two_connections_never_both_hold_a_task(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    one, two = SqliteJobStore(path), SqliteJobStore(path)
    await one.open()
    await two.open()
    try:
        got = await asyncio.gather(
            *(s.claim_task(f"t{i % 3}", owner, LEASE, now=NOW)
              for i in range(12) for s, owner in ((one, "a"), (two, "b")))
        )  # fmt: skip
        winners: dict[str, set[str]] = {}
        for i, (took_a, took_b) in enumerate(zip(got[::2], got[1::2], strict=True)):
            for owner, took in (("a", took_a), ("b", took_b)):
                if took:
                    winners.setdefault(f"t{i % 3}", set()).add(owner)
        assert sorted(winners) == ["t0", "t1", "t2"]
        assert all(len(owners) == 1 for owners in winners.values())
    finally:
        await one.close()
        await two.close()


# ---------------------------------------------------------------------------- submissions


async def settled(store: JobStore) -> str:
    """An ACTIVE submission whose only job ended with its results collected."""
    sub, [job] = await accepted(store, 1)
    job = await drive(store, job, JobState.SUCCEEDED)
    await store.transition_job(
        job.id, job.state, job.state, now=NOW, result_state=ResultState.COLLECTED
    )
    return sub.id


async def test_a_submission_is_held_for_finishing_by_one_owner(store: JobStore) -> None:
    sub_id = await settled(store)
    held = await store.claim_submission(sub_id, "a", LEASE, now=NOW)
    assert held is not None
    assert (held.owner, held.lease_until) == ("a", NOW + LEASE)
    assert await store.get_submission(sub_id) == held
    assert await store.claim_submission(sub_id, "b", LEASE, now=NOW + 1) is None
    again = await store.claim_submission(sub_id, "a", LEASE, now=NOW + 1)
    assert again == held  # more than half left: returned as it is
    taken = await store.claim_submission(sub_id, "b", LEASE, now=NOW + LEASE + 1)
    assert taken is not None
    assert (taken.owner, taken.version) == ("b", held.version + 1)
    assert await store.claim_submission("sub_missing", "a", LEASE, now=NOW) is None


async def test_finishing_by_an_owner_whose_lease_was_taken_over_changes_nothing(
    store: JobStore,
) -> None:
    sub_id = await settled(store)
    await store.claim_submission(sub_id, "a", LEASE, now=NOW)
    await store.claim_submission(sub_id, "b", LEASE, now=NOW + LEASE + 1)
    before = await snapshot(store)
    with pytest.raises(LeaseLost):
        await store.finish_submission(
            sub_id, Outcome.SUCCEEDED, now=NOW + LEASE + 2, event=DONE, owner="a"
        )
    assert await snapshot(store) == before
    done = await store.finish_submission(
        sub_id, Outcome.SUCCEEDED, now=NOW + LEASE + 2, event=DONE, owner="b"
    )
    assert done.state is SubmissionState.DONE
    assert await store.claim_submission(sub_id, "b", LEASE, now=NOW + LEASE + 3) is None


async def test_only_an_active_submission_can_be_claimed(store: JobStore) -> None:
    sub, _ = await accepted(store, 1)
    other = await store.begin_claim(new_submission(name="b.jsonl"), now=NOW)
    assert await store.claim_submission(other.id, "a", LEASE, now=NOW) is None  # CLAIMING
    assert await store.claim_submission(sub.id, "a", LEASE, now=NOW) is not None


async def test_every_change_of_a_submission_bumps_its_version(store: JobStore) -> None:
    sub, _ = await accepted(store, 1)
    assert sub.version == 2  # claimed, accepted
    cancelled = await store.request_cancel(sub.id, now=NOW, event=EventSpec("x"))
    assert cancelled.version == 3
    assert await store.get_submission(sub.id) == cancelled
