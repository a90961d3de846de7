"""``batchd store copy --from sqlite:///... --to postgresql://...``: a stopped SQLite store's
state lands in an empty PostgreSQL schema whole and verified, or not at all."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from batchd.cli import run
from batchd.models import JobState, Outcome, ResultCounts
from batchd.store.base import EventSpec, JobStore
from batchd.store.registry import StoreOptions, make_store
from batchd.store.sqlite import SqliteJobStore
from tests.postgres_schema import fresh_schema

from .conftest import NOW, accepted, drive, settle, snapshot
from .test_duplicates import duplicate


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("copy") as url:
        yield url


async def fill(store: JobStore) -> None:
    """Something of everything: submissions in several states, jobs, events (fanned out or
    not), deliveries and endpoint health, a duplicate."""
    done, jobs = await accepted(store, 2, name="done.jsonl", sha256="aa" * 32)
    for job in jobs:
        await settle(store, job)
    await store.finish_submission(
        done.id,
        Outcome.SUCCEEDED,
        now=NOW + 5,
        event=EventSpec("results.ready"),
        results=ResultCounts(20, 0, 0, {"total_tokens": 7}),
    )
    active, [first, _] = await accepted(store, 2, name="active.jsonl", sha256="bb" * 32)
    await drive(store, first, JobState.RUNNING, now=NOW + 1)
    await store.claim_due("track", "host-a", 60, now=NOW + 2)
    events = await store.unfanned_events()
    await store.fan_out(events[0].id, ["ops", "audit"], now=NOW + 3)
    await store.record_delivery(
        events[0].id, "ops", now=NOW + 4, state="delivered", status=200, error=None,
        next_attempt_at=None,
    )  # fmt: skip
    await store.record_duplicate(
        duplicate("prov-dup", job_id=first.id, submission_id=active.id),
        event=EventSpec("batch.duplicate_cancelled", {"provider_job_id": "prov-dup"}),
    )
    await store.deployment_id("bdsource", now=NOW)  # the tag on the provider's jobs
    await store.claim_task("sweep:mistral", "host-a", 60, now=NOW + 2)


async def sqlite_store(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "batchd.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    await fill(store)
    await store.close()
    return path


async def copy(path: Path, url: str) -> int:
    """``batchd store copy`` as a user runs it (its own event loop: on a thread here)."""
    return await asyncio.to_thread(
        run, ["store", "copy", "--from", f"sqlite:///{path}", "--to", url]
    )


async def observed(url: str) -> dict[str, Any]:
    store = make_store(url, StoreOptions(migrate=False))
    await store.open()
    try:
        deployment = await store.deployment_id("bdnew", now=NOW)  # the copied one, if any
        return {
            **await snapshot(store),
            "duplicates": await store.duplicates(),
            "deployment": deployment,
            "sweeper": await store.claim_task("sweep:mistral", "host-b", 60, now=NOW + 3),
        }
    finally:
        await store.close()


async def test_the_copy_holds_everything_the_source_held(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await sqlite_store(tmp_path)
    assert await copy(path, pg_url) == 0
    out = capsys.readouterr().out
    assert "2 submissions, 4 jobs" in out and "(verified)" in out
    source, target = await observed(f"sqlite:///{path}"), await observed(pg_url)
    assert source["submissions"] and source["deliveries"] and source["duplicates"]
    assert target == source  # every value a caller can read, in the same order
    assert (target["deployment"], target["sweeper"]) == ("bdsource", False)


async def test_a_target_holding_rows_is_refused_and_left_alone(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await sqlite_store(tmp_path)
    target = make_store(pg_url)
    await target.open()
    await target.append_event(EventSpec("t.already_here"), now=NOW)
    await target.close()
    assert await copy(path, pg_url) == 1
    assert "already holds 1 events rows" in capsys.readouterr().err
    assert [e.type for e in (await observed(pg_url))["events"]] == ["t.already_here"]


async def test_a_running_daemon_is_refused(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await sqlite_store(tmp_path)
    with (path.parent / "batchd.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert await copy(path, pg_url) == 1
    assert "stop it before copying" in capsys.readouterr().err
    with psycopg.connect(pg_url) as conn:  # nothing was created either
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
    assert found == (0,)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("postgresql://db/x", "postgresql://db/y", "--from must be a sqlite:// URL"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/y.db", "--to must be a postgres:// or"),
        ("sqlite:////tmp/x.db", "postgresql://u:pw@db/y", "--to: the URL holds a password"),
    ],
)
def test_wrong_urls_are_usage_errors(
    source: str, target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["store", "copy", "--from", source, "--to", target]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert ":pw@" not in err
