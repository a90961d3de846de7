"""Child process of ``test_crash.py`` (run as a script, never imported by pytest).

``crash_child.py <db> work``: loop over store verbs that carry events, printing one line per
acknowledged change right after the verb returned (so after its COMMIT), until killed.
``crash_child.py <db> die-mid-migration``: open a fresh database and die (``os._exit``) inside
the first migration's transaction, after its DDL and before the ``user_version`` bump.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from batchd.models import JobState, Outcome, ResultState
from batchd.store.base import ChunkPlan, DeliveryState, EventSpec, NewSubmission
from batchd.store.sqlite import SqliteJobStore
from batchd.store.sqlite_db import Tx

ENDPOINTS = ["a", "b"]
# (from, to, event type or None): NEW -> ... -> SUCCEEDED; the test knows the same table.
STEPS = [
    (JobState.NEW, JobState.UPLOADED, "t.uploaded"),
    (JobState.UPLOADED, JobState.CREATING, None),
    (JobState.CREATING, JobState.PENDING, "batch.created"),
    (JobState.PENDING, JobState.RUNNING, "batch.running"),
    (JobState.RUNNING, JobState.SUCCEEDED, "batch.succeeded"),
]


def ack(*parts: str) -> None:
    print(" ".join(parts), flush=True)


def submission(n: int) -> NewSubmission:
    name = f"{os.getpid()}-{n}.jsonl"
    return NewSubmission(
        "r1", name, "mistral", "/v1/chat/completions", None, 24, {}, 100,
        {"source": "folder", "inbox": f"/in/{name}", "processing": f"/processing/{name}",
         "dev": 1, "ino": n},
    )  # fmt: skip


async def one_job(store: SqliteJobStore, job_id: str) -> None:
    for old, new, event_type in STEPS:
        fields: dict[str, Any] = (
            {"provider_job_id": f"p-{job_id}"} if new is JobState.PENDING else {}
        )
        event = EventSpec(event_type, {"job_id": job_id}) if event_type else None
        await store.transition_job(job_id, old, new, now=time.time(), event=event, **fields)
        ack("job", job_id, new.value)
    await store.transition_job(
        job_id,
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        now=time.time(),
        result_state=ResultState.COLLECTED,
    )
    ack("job", job_id, "collected")


async def one_submission(store: SqliteJobStore, n: int) -> None:
    sub = await store.begin_claim(submission(n), now=time.time())
    ack("sub", sub.id, "claiming")
    await store.mark_claimed(sub.id, now=time.time())
    ack("sub", sub.id, "claimed")
    chunks = [ChunkPlan(i, i, 1, 10) for i in range(3)]
    jobs = await store.accept_submission(
        sub.id,
        sha256=f"{n:064x}",
        line_count=3,
        results_dir="/done",
        chunks=chunks,
        now=time.time(),
        event=EventSpec("submission.accepted", {"n": n}),
    )
    ack("sub", sub.id, "active")
    for job in jobs:
        await one_job(store, job.id)
    done = EventSpec("submission.done", {"n": n})
    await store.finish_submission(sub.id, Outcome.SUCCEEDED, now=time.time(), event=done)
    ack("sub", sub.id, "done")


async def notify(store: SqliteJobStore) -> None:
    for event in await store.unfanned_events():
        await store.fan_out(event.id, ENDPOINTS, now=time.time())
        ack("fan", event.id)
        note = None if event.type == "t.delivered" else EventSpec("t.delivered", {"of": event.id})
        await store.record_delivery(
            event.id,
            "a",
            now=time.time(),
            state=DeliveryState.DELIVERED,
            status=200,
            error=None,
            next_attempt_at=None,
            event=note,
        )
        ack("delivered", event.id)


async def work(path: Path) -> None:
    store = SqliteJobStore(path)
    await store.open()
    ack("ready")
    n = 0
    while True:
        n += 1
        await one_submission(store, n)
        await notify(store)


async def die_mid_migration(path: Path) -> None:
    run = Tx.run

    def dying_run(self: Tx, sql: str, params: Any = ()) -> int:
        if sql.startswith("PRAGMA user_version"):
            os._exit(137)
        return run(self, sql, params)

    Tx.run = dying_run  # type: ignore[method-assign]
    await SqliteJobStore(path).open()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    db, mode = Path(sys.argv[1]), sys.argv[2]
    asyncio.run(work(db) if mode == "work" else die_mid_migration(db))
