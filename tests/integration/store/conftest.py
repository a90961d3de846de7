"""The behaviour suite's fixtures: one ``store`` per implementation (saq's ``TestQueue`` idea),
plus builders that walk submissions and jobs to a wanted state through the public verbs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchd.clock import utc_iso
from batchd.models import ACTIVE, TERMINAL, Event, Job, JobState, ResultState, Submission
from batchd.store.base import ChunkPlan, DeliveryState, EventSpec, JobStore, NewSubmission
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import make_store as make_store_at
from batchd.store.sqlite import SqliteJobStore
from tests.postgres_schema import fresh_schema

NOW = 1_700_000_000.0
EVERYTHING = 1_000_000


PENDING, DELIVERED, DEAD, DROPPED = (
    DeliveryState.PENDING,
    DeliveryState.DELIVERED,
    DeliveryState.DEAD,
    DeliveryState.DROPPED,
)


def body(event_type: str, created_at: float, data: object) -> bytes:
    """The webhook body as specified: canonical JSON of type, timestamp and data."""
    obj = {"type": event_type, "timestamp": utc_iso(created_at), "data": data}
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


async def append(store: JobStore, n: int = 1, *, now: float = NOW) -> list[Event]:
    return [await store.append_event(EventSpec("t.note", {"i": i}), now=now + i) for i in range(n)]


KINDS = ["sqlite", "memory", "postgresql"]


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema of this test's own (skipped where no server answers)."""
    with fresh_schema() as url:
        yield url


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> JobStore:
    if kind == "sqlite":
        return SqliteJobStore(tmp_path / "batchd.db")
    if kind == "postgresql":
        return make_store_at(request.getfixturevalue("pg_url"))
    return MemoryJobStore()


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    s = make_store(request.param, tmp_path, request)
    await s.open()
    yield s
    assert await s.integrity_check() == []
    await s.close()


def origin(name: str) -> dict[str, Any]:
    """A source's origin: any JSON object naming its source (here the drop folder's shape)."""
    return {
        "source": "folder",
        "host": "h1",
        "inbox": f"/spool/inbox/{name}",
        "processing": f"/spool/processing/99-{name}",
        "dev": 1,
        "ino": 99,
    }


def new_submission(route: str = "r1", name: str = "a.jsonl", **changes: Any) -> NewSubmission:
    values: dict[str, Any] = {
        "route": route,
        "name": name,
        "provider": "mistral",
        "endpoint": "/v1/chat/completions",
        "model": "mistral-small-latest",
        "timeout_hours": 24,
        "metadata": {"team": "search"},
        "size_bytes": 1234,
        "origin": origin(name),
    }
    values.update(changes)
    return NewSubmission(**values)


def chunks(n: int) -> list[ChunkPlan]:
    return [ChunkPlan(index=i, line_start=10 * i, line_count=10, byte_count=1000) for i in range(n)]


async def claimed(store: JobStore, *, now: float = NOW, **changes: Any) -> Submission:
    sub = await store.begin_claim(new_submission(**changes), now=now)
    return await store.mark_claimed(sub.id, now=now)


async def accepted(
    store: JobStore, n: int = 2, *, now: float = NOW, sha256: str = "ab" * 32, **changes: Any
) -> tuple[Submission, list[Job]]:
    sub = await claimed(store, now=now, **changes)
    jobs = await store.accept_submission(
        sub.id,
        sha256=sha256,
        line_count=10 * n,
        results_dir=f"/spool/done/{sub.name}",
        chunks=chunks(n),
        now=now,
        event=EventSpec("submission.accepted", {"submission_id": sub.id}),
    )
    current = await store.get_submission(sub.id)
    assert current is not None
    return current, jobs


def path_to(state: JobState) -> list[JobState]:
    """Allowed steps from NEW to ``state``."""
    if state is JobState.NEW:
        return []
    if state in ACTIVE | TERMINAL:
        return [JobState.CREATING, state]
    return [state]


async def drive(store: JobStore, job: Job, state: JobState, *, now: float = NOW) -> Job:
    for step in path_to(state):
        job = await store.transition_job(job.id, job.state, step, now=now)
    return job


async def settle(store: JobStore, job: Job, *, now: float = NOW) -> Job:
    """Walk a job to SUCCEEDED with results collected."""
    job = await drive(store, job, JobState.SUCCEEDED, now=now)
    return await store.transition_job(
        job.id, job.state, job.state, now=now, result_state=ResultState.COLLECTED
    )


async def snapshot(store: JobStore) -> dict[str, Any]:
    """Everything a caller can observe, to show that a refused verb changed nothing."""
    events = await store.list_events(limit=EVERYTHING)
    return {
        "submissions": await store.list_submissions(limit=EVERYTHING),
        "jobs": await store.list_jobs(limit=EVERYTHING),
        "events": events,
        "deliveries": [await store.deliveries_for(e.id) for e in events],
        "health": await store.endpoint_health(),
        "stats": await store.stats(),
    }
