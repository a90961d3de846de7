"""``batchd run`` on a PostgreSQL store (``[store] url = "postgresql://..."``), the real
processes: files dropped end in done/ with their results, and a SIGKILL mid-run loses
nothing (the next start resumes from what the database holds)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchd.models import Outcome, SubmissionState
from batchd.store.base import JobStore
from batchd.store.registry import StoreOptions, make_store
from tests.acceptance.harness import Harness, RouteSpec, chat_lines, read_jsonl
from tests.postgres_schema import fresh_schema

REQUESTS_PER_JOB = 3


@pytest.fixture
async def pg_store(harness: Harness) -> AsyncIterator[tuple[str, JobStore]]:
    with fresh_schema("run") as url:
        harness.start_emulator()
        harness.configure(
            [RouteSpec("chat")],
            store={"url": url},
            provider={"max_requests_per_job": REQUESTS_PER_JOB},
        )
        store = make_store(url, StoreOptions(migrate=False))
        yield url, store
        await store.close()
        for run in harness.runs:  # before the schema is dropped
            run.close(sig=signal.SIGKILL)


async def done(harness: Harness, store: JobStore, names: list[str]) -> bool:
    if not harness.runs or harness.runs[-1].returncode is not None:
        raise AssertionError(f"batchd is not running\n{harness.tail()}")
    subs = await store.list_submissions()
    finished = {s.name for s in subs if s.state is SubmissionState.DONE}
    return set(names) <= finished


async def test_files_go_through_a_postgresql_store_and_survive_a_kill(
    harness: Harness, pg_store: tuple[str, JobStore]
) -> None:
    _, store = pg_store
    await harness.start()
    await store.open()
    names = [f"f{i}.jsonl" for i in range(4)]
    for i, name in enumerate(names[:2]):
        harness.drop("chat", name, chat_lines(5, prefix=f"a{i}-"))
    await harness.wait_until(
        lambda: done(harness, store, names[:1]), "the first file done", timeout_s=60
    )
    harness.kill()  # SIGKILL, whatever it was doing
    for i, name in enumerate(names[2:], start=2):
        harness.drop("chat", name, chat_lines(5, prefix=f"a{i}-"))
    await harness.start()
    await harness.wait_until(lambda: done(harness, store, names), "every file done", timeout_s=90)

    for sub in await store.list_submissions():
        assert sub.outcome is Outcome.SUCCEEDED
        jobs = await store.jobs_for_submission(sub.id)
        assert len(jobs) == 2  # 5 requests, 3 per job
        assert len({j.provider_job_id for j in jobs}) == 2
        folder = Path(sub.results_dir or "")
        ids = [r["custom_id"] for r in read_jsonl(folder / "results.jsonl")]
        assert ids == [r["custom_id"] for r in read_jsonl(folder / "input.jsonl")]
    assert sorted(p.name for p in harness.spool("chat").done.iterdir()) == [
        n.removesuffix(".jsonl") for n in names
    ]
