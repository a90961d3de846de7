"""Crash consistency (reliability.md D2, D4): SIGKILL a writer at random moments, then check
that the database is sound, that every acknowledged change is there, and that no transaction
is half-applied (every state change has exactly its events, every fan-out all its deliveries).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from batchd.models import Event, Job, ResultState, Submission
from batchd.store.base import DeliveryState
from batchd.store.migrate import load_migrations
from batchd.store.sqlite import SqliteJobStore

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 16
SUB_STAGES = ["claiming", "claimed", "active", "done"]
JOB_STAGES = ["new", "uploaded", "creating", "pending", "running", "succeeded", "collected"]
JOB_EVENTS = {
    "uploaded": "t.uploaded",
    "pending": "batch.created",
    "running": "batch.running",
    "succeeded": "batch.succeeded",
}
SUB_EVENTS = {"active": "submission.accepted", "done": "submission.done"}


@dataclass
class Acks:
    subs: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    fanned: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)

    def add(self, line: str) -> None:
        kind, *rest = line.split()
        if kind == "sub":
            self.subs[rest[0]] = rest[1]
        elif kind == "job":
            self.jobs[rest[0]] = rest[1]
        elif kind == "fan":
            self.fanned.add(rest[0])
        elif kind == "delivered":
            self.delivered.add(rest[0])


def run_child(db: Path, out: Path, mode: str) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(db), mode],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )


def complete_lines(out: Path) -> list[str]:
    text = out.read_text()
    return text.split("\n")[:-1]  # a line cut by the kill has no newline: not acknowledged


def wait_for_ready(out: Path, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not out.read_text().startswith("ready\n"):
        assert child.poll() is None, "the child died before it was ready"
        assert time.monotonic() < deadline, "the child never became ready"
        time.sleep(0.01)


def kill_at_random(db: Path, tmp_path: Path, rng: random.Random, i: int, acks: Acks) -> None:
    out = tmp_path / f"acks-{i}.txt"
    child = run_child(db, out, "work")
    try:
        wait_for_ready(out, child)
        time.sleep(rng.uniform(0.02, 0.4))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    for line in complete_lines(out)[1:]:
        acks.add(line)


def stage_of(state: str, result_state: ResultState) -> str:
    return "collected" if result_state is ResultState.COLLECTED else state


def expected_events(stage: str, table: dict[str, str], order: list[str]) -> list[str]:
    return [table[s] for s in order[: order.index(stage) + 1] if s in table]


async def check(db: Path, acks: Acks) -> None:
    store = SqliteJobStore(db)
    await store.open()
    try:
        assert await store.integrity_check() == []
        subs = {s.id: s for s in await store.list_submissions(limit=10**6)}
        jobs = {j.id: j for j in await store.list_jobs(limit=10**6)}
        events = await store.list_events(limit=10**6)
        check_acknowledged(acks, subs, jobs)
        check_no_half_transactions(subs, jobs, events)
        await check_outbox(store, acks, events)
    finally:
        await store.close()


def check_acknowledged(acks: Acks, subs: dict[str, Submission], jobs: dict[str, Job]) -> None:
    assert acks.subs and acks.jobs, "the children did not get any work done"
    for sub_id, stage in acks.subs.items():
        assert sub_id in subs, f"acknowledged submission {sub_id} lost"
        assert SUB_STAGES.index(subs[sub_id].state.value) >= SUB_STAGES.index(stage)
    for job_id, stage in acks.jobs.items():
        assert job_id in jobs, f"acknowledged job {job_id} lost"
        job = jobs[job_id]
        assert JOB_STAGES.index(stage_of(job.state.value, job.result_state)) >= JOB_STAGES.index(
            stage
        )


def check_no_half_transactions(
    subs: dict[str, Submission], jobs: dict[str, Job], events: list[Event]
) -> None:
    by_job: dict[str, list[str]] = defaultdict(list)
    by_sub: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e.type == "t.delivered":  # carries the ids of the event it reports on
            continue
        if e.job_id:
            by_job[e.job_id].append(e.type)
        elif e.submission_id:
            by_sub[e.submission_id].append(e.type)
    for job in jobs.values():
        stage = stage_of(job.state.value, job.result_state)
        assert by_job[job.id] == expected_events(stage, JOB_EVENTS, JOB_STAGES), job
        has_provider_id = JOB_STAGES.index(stage) >= JOB_STAGES.index("pending")
        assert (job.provider_job_id is not None) == has_provider_id, job
    chunks = Counter(j.submission_id for j in jobs.values())
    for sub in subs.values():
        assert by_sub[sub.id] == expected_events(sub.state.value, SUB_EVENTS, SUB_STAGES), sub
        assert chunks[sub.id] == (3 if sub.state.value in {"active", "done"} else 0), sub


async def check_outbox(store: SqliteJobStore, acks: Acks, events: list[Event]) -> None:
    notes = Counter(e.data["of"] for e in events if e.type == "t.delivered")
    unfanned = {e.id for e in await store.unfanned_events(limit=10**6)}
    assert acks.fanned <= {e.id for e in events} - unfanned
    for event in events:
        deliveries = {d.endpoint: d for d in await store.deliveries_for(event.id)}
        fanned = event.id not in unfanned
        assert sorted(deliveries) == (["a", "b"] if fanned else []), event
        delivered = fanned and deliveries["a"].state == DeliveryState.DELIVERED
        assert delivered or event.id not in acks.delivered, event
        if event.type != "t.delivered":
            assert notes[event.id] == (1 if delivered else 0), event


def test_random_kills_lose_nothing_acknowledged_and_half_apply_nothing(tmp_path: Path) -> None:
    db = tmp_path / "batchd.db"
    seed = int(os.environ.get("BATCHD_CRASH_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    acks = Acks()
    for i in range(KILLS):
        kill_at_random(db, tmp_path, rng, i, acks)
    asyncio.run(check(db, acks))


def test_a_kill_inside_a_migration_leaves_the_old_version(tmp_path: Path) -> None:
    db = tmp_path / "batchd.db"
    child = run_child(db, tmp_path / "out.txt", "die-mid-migration")
    assert child.wait(timeout=30) == 137

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)

    async def reopen() -> int:
        store = SqliteJobStore(db)
        await store.open()
        try:
            assert await store.integrity_check() == []
            return await store.schema_version()
        finally:
            await store.close()

    assert asyncio.run(reopen()) == len(load_migrations())
