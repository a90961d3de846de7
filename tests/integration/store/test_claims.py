"""Claims on jobs (``store/leases.py``): an owner and a lease per job, a version bumped by every
change, so two instances on one store never take the same job at the same time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from batchd.errors import StoreError
from batchd.models import JobState
from batchd.store.base import JobStore
from batchd.store.leases import LeaseLost
from batchd.store.sqlite import SqliteJobStore

from .conftest import NOW, accepted, drive, settle, snapshot

LEASE = 60.0


async def test_a_claim_holds_due_jobs_of_its_stage_for_the_lease(store: JobStore) -> None:
    _, jobs = await accepted(store, 3)
    taken = await store.claim_due("submit", "a", LEASE, now=NOW)
    assert [j.id for j in taken] == sorted(j.id for j in jobs)
    assert {(j.owner, j.lease_until) for j in taken} == {("a", NOW + LEASE)}
    assert all(
        j.version == old.version + 1
        for j, old in zip(taken, sorted(jobs, key=lambda j: j.id), strict=True)
    )
    assert [await store.get_job(j.id) for j in taken] == taken

    assert await store.claim_due("submit", "b", LEASE, now=NOW + 1) == []  # held by a
    again = await store.claim_due("submit", "a", LEASE, now=NOW + 1)  # a takes its own back
    assert [j.id for j in again] == [j.id for j in taken]
    later = await store.claim_due("submit", "b", LEASE, now=NOW + 1 + LEASE)  # a's ran out
    assert [j.owner for j in later] == ["b"] * 3


async def test_only_due_jobs_of_the_stage_and_provider_up_to_the_limit(store: JobStore) -> None:
    _, jobs = await accepted(store, 4)
    running = await drive(store, jobs[0], JobState.RUNNING)
    await settle(store, jobs[1])  # terminal, results collected: no stage
    pending = await drive(store, jobs[2], JobState.FAILED)  # results still to collect

    assert [j.id for j in await store.claim_due("track", "a", LEASE, now=NOW)] == [running.id]
    assert [j.id for j in await store.claim_due("collect", "a", LEASE, now=NOW)] == [pending.id]
    assert [j.id for j in await store.claim_due("submit", "a", LEASE, now=NOW)] == [jobs[3].id]
    assert await store.claim_due("submit", "b", LEASE, now=NOW, provider="other") == []
    assert await store.claim_due("track", "b", LEASE, now=NOW - 1) == []  # not due yet


async def test_the_limit_takes_the_first_due(store: JobStore) -> None:
    _, jobs = await accepted(store, 3)
    taken = await store.claim_due("submit", "a", LEASE, now=NOW, limit=2)
    assert len(taken) == 2
    rest = await store.claim_due("submit", "b", LEASE, now=NOW)
    assert {j.id for j in taken} | {j.id for j in rest} == {j.id for j in jobs}


async def test_a_transition_by_an_owner_whose_lease_was_taken_over_changes_nothing(
    store: JobStore,
) -> None:
    _, [job] = await accepted(store, 1)
    await store.claim_due("submit", "a", LEASE, now=NOW)
    await store.claim_due("submit", "b", LEASE, now=NOW + LEASE + 1)  # a's lease ran out
    before = await snapshot(store)
    with pytest.raises(LeaseLost):
        await store.transition_job(
            job.id, JobState.NEW, JobState.NEW, now=NOW + LEASE + 2, owner="a", attempts=1
        )
    assert await snapshot(store) == before
    moved = await store.transition_job(
        job.id, JobState.NEW, JobState.UPLOADED, now=NOW + LEASE + 2, owner="b"
    )
    assert (moved.state, moved.owner) == (JobState.UPLOADED, "b")


async def test_claims_are_not_fields_a_transition_may_set(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    for name, value in (("lease_until", NOW), ("version", 9)):  # owner= names the caller
        fields: dict[str, Any] = {name: value}
        with pytest.raises(StoreError, match=name):
            await store.transition_job(job.id, JobState.NEW, JobState.NEW, now=NOW, **fields)


async def test_two_connections_to_one_database_never_take_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    one, two = SqliteJobStore(path), SqliteJobStore(path)
    await one.open()
    await two.open()
    try:
        _, jobs = await accepted(one, 20)
        rounds = await asyncio.gather(
            *(s.claim_due("submit", s_name, LEASE, now=NOW, limit=3)
              for _ in range(5) for s, s_name in ((one, "a"), (two, "b")))
        )  # fmt: skip
        owners: dict[str, str] = {}
        for taken in rounds:
            for job in taken:
                assert owners.setdefault(job.id, job.owner or "") == job.owner
        assert set(owners) <= {j.id for j in jobs}
        stored = {j.id: j.owner for j in await one.list_jobs()}
        assert all(stored[i] == o for i, o in owners.items())
    finally:
        await one.close()
        await two.close()


async def test_a_held_job_is_rewritten_only_when_half_its_lease_is_gone(store: JobStore) -> None:
    _, [job] = await accepted(store, 1)
    [first] = await store.claim_due("submit", "a", LEASE, now=NOW)
    [same] = await store.claim_due("submit", "a", LEASE, now=NOW + LEASE / 2 - 1)
    assert same == first  # more than half left: returned as it is, no write
    [renewed] = await store.claim_due("submit", "a", LEASE, now=NOW + LEASE / 2 + 1)
    assert (renewed.lease_until, renewed.version) == (NOW + LEASE * 1.5 + 1, first.version + 1)
    assert await store.get_job(job.id) == renewed
