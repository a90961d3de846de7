"""Fleets of open jobs for the tracking and scale scenarios, created fast.

Pushing 10,000 jobs through intake would dominate the run, so a fleet is made directly: every
job is created at the emulator through its API (one shared one-line input file), and the
daemon's store gets the matching rows through the store's own verbs, exactly what the submitter
would have committed: one accepted submission with one chunk per job, each job PENDING
with its provider id, and the metadata the submitter puts on a job
(``batchd=<instance id>``, ``batchd_job=<local id>``...). The rows come from the store's
``accept_submission``; the adopt step is one SQL transaction setting the columns the submitter's
adopt sets (10,000 single-row transitions take ~35 s). The ``batch.created`` events are left out
(in a steady state they were delivered long ago). A second fleet for the tuned poller is
created in the same pass on its own twin emulator (same settings, same seed), alternating with
the daemon's, so that both fleets have the same timing (the k-th job of each gets the same
seeded duration) and each side's calls are counted by its own emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from batchd.folder_origin import FolderOrigin
from batchd.models import Job, Submission
from batchd.store.base import ChunkPlan, EventSpec, NewSubmission
from batchd.store.sqlite import SqliteJobStore
from batchd.submitter import job_metadata
from batchd.wiring import host_id
from batchd.workdir import WorkDir
from tests.benchmarks.configs import ENDPOINT, MODEL, PROVIDER, ROUTE, BatchdSetup
from tests.benchmarks.procs import API_KEY

LINE = (
    json.dumps(
        {
            "custom_id": "0",
            "body": {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 4},
        },
        separators=(",", ":"),
    ).encode()
    + b"\n"
)
CREATE_CONCURRENCY = 16


@dataclass(frozen=True)
class Seeded:
    daemon_jobs: list[str]  # provider job ids the daemon tracks
    poller_jobs: list[str]  # provider job ids for the tuned poller
    instance: str
    seconds: float


class _Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def upload(self, content: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename="ping.jsonl", content_type="application/jsonl")
        async with self._session.post(f"{self._url}/v1/files", data=form) as resp:
            resp.raise_for_status()
            return str((await resp.json())["id"])

    async def create(self, file_id: str, metadata: dict[str, str]) -> str:
        body = {
            "endpoint": ENDPOINT,
            "model": MODEL,
            "input_files": [file_id],
            "metadata": metadata,
            "timeout_hours": 168,
        }
        async with self._session.post(f"{self._url}/v1/batch/jobs", json=body) as resp:
            resp.raise_for_status()
            return str((await resp.json())["id"])


async def _create_all(
    apis: Sequence[_Api], file_ids: Sequence[str], order: Sequence[tuple[int, dict[str, str]]]
) -> list[str]:
    """Create every ``(api index, metadata)`` job; ids in the same order."""
    limit = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(which: int, meta: dict[str, str]) -> str:
        async with limit:
            return await apis[which].create(file_ids[which], meta)

    return list(await asyncio.gather(*(one(w, m) for w, m in order)))


async def _accept(
    store: SqliteJobStore, setup: BatchdSetup, n: int
) -> tuple[Submission, list[Job]]:
    now = time.time()
    processing = setup.spool / "processing" / "fleet.jsonl"
    sub = await store.begin_claim(
        NewSubmission(
            route=ROUTE,
            name="fleet.jsonl",
            provider=PROVIDER,
            endpoint=ENDPOINT,
            model=MODEL,
            timeout_hours=168,
            metadata={},
            origin=FolderOrigin(
                host=None,
                inbox=str(setup.spool / "inbox" / "fleet.jsonl"),
                processing=str(processing),
                dev=0,
                ino=0,
            ).to_json(),
            size_bytes=len(LINE) * n,
        ),
        now=now,
    )
    sub = await store.mark_claimed(sub.id, now=now)
    chunks = [
        ChunkPlan(index=i, line_start=i, line_count=1, byte_count=len(LINE)) for i in range(n)
    ]
    jobs = await store.accept_submission(
        sub.id,
        sha256=hashlib.sha256(LINE * n).hexdigest(),
        line_count=n,
        results_dir=str(setup.spool / "done" / "fleet"),
        chunks=chunks,
        now=now,
        event=EventSpec("submission.accepted", {"submission_id": sub.id, "requests": n}),
    )
    refreshed = await store.get_submission(sub.id)
    assert refreshed is not None
    return refreshed, jobs


def _write_chunks(work: WorkDir, submission_id: str, count: int) -> None:
    """Every chunk holds the same line (custom_id "0"), as the shared input does: one file,
    hard-linked ``count`` times."""
    folder = work.submission(submission_id)
    folder.mkdir(parents=True, exist_ok=True)
    first = work.chunk(submission_id, 0)
    first.write_bytes(LINE)
    for index in range(1, count):
        os.link(first, work.chunk(submission_id, index))


def _adopt(database: Path, jobs: Sequence[Job], provider_ids: Sequence[str]) -> None:
    """What the submitter's adopt commits for each job (NEW -> PENDING with its provider id),
    written in one transaction: 10,000 single-row transitions would take half a minute."""
    now = time.time()
    rows = [(pid, now, now, now, job.id) for job, pid in zip(jobs, provider_ids, strict=True)]
    conn = sqlite3.connect(database, timeout=30)
    try:
        with conn:
            conn.executemany(
                "UPDATE jobs SET state = 'pending', provider_job_id = ?, raw_status = 'QUEUED',"
                " provider_created_at = ?, attempts = 0, last_error = NULL,"
                " next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'new'",
                rows,
            )
    finally:
        conn.close()


def _interleave(daemon: list[Any], poller: list[Any]) -> list[tuple[int, Any]]:
    """``(0, item)`` for the daemon's and ``(1, item)`` for the poller's, alternating."""
    out: list[tuple[int, Any]] = []
    for i in range(max(len(daemon), len(poller))):
        out += [(0, x) for x in daemon[i : i + 1]] + [(1, x) for x in poller[i : i + 1]]
    return out


async def _seed(
    setup: BatchdSetup, urls: tuple[str, str], n: int, poller_n: int, tag: str
) -> Seeded:
    started = time.perf_counter()
    setup.spool.mkdir(parents=True, exist_ok=True)
    setup.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    instance = host_id(setup.data_dir)  # the first daemon proposes it as the deployment id
    store = SqliteJobStore(setup.database)
    await store.open()
    try:
        sub, jobs = await _accept(store, setup, n)
        _write_chunks(WorkDir(setup.data_dir / "work"), sub.id, n)
        daemon_meta = [job_metadata(sub, job, instance) for job in jobs]
        poller_meta = [{"fleet": f"poller-{tag}", "n": str(i)} for i in range(poller_n)]
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            apis = [_Api(session, url) for url in urls]
            file_ids = [await api.upload(LINE) for api in apis]
            order = _interleave(daemon_meta, poller_meta)
            ids = await _create_all(apis, file_ids, order)
        daemon_ids = [pid for (which, _), pid in zip(order, ids, strict=True) if which == 0]
        poller_ids = [pid for (which, _), pid in zip(order, ids, strict=True) if which == 1]
    finally:
        await store.close()
    _adopt(setup.database, jobs, daemon_ids)
    return Seeded(daemon_ids, poller_ids, instance, time.perf_counter() - started)


def seed_fleets(
    setup: BatchdSetup, daemon_url: str, poller_url: str, n: int, poller_n: int, tag: str
) -> Seeded:
    """``n`` jobs at ``daemon_url`` tracked by the daemon at ``setup``, and ``poller_n`` jobs
    at ``poller_url`` (a twin emulator) for the tuned poller, created alternately."""
    return asyncio.run(_seed(setup, (daemon_url, poller_url), n, poller_n, tag))
