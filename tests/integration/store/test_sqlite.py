"""SQLite-only behaviour: settings, migrations, locking, other processes, reopening."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from batchd.errors import SchemaMismatch, StoreError
from batchd.models import JobState
from batchd.store import sqlite_db
from batchd.store.base import EventSpec
from batchd.store.migrate import Migration, load_migrations, migrate
from batchd.store.sqlite import SqliteJobStore
from batchd.store.sqlite_db import APPLICATION_ID, Database, Tx
from batchd.store.sqlite_rows import INSERT_EVENT

from .conftest import NOW, accepted, drive, snapshot


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    s = SqliteJobStore(tmp_path / "batchd.db")
    await s.open()
    yield s
    await s.close()


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def schema(path: Path) -> list[tuple[object, ...]]:
    return raw(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


async def test_settings_are_read_back(store: SqliteJobStore, tmp_path: Path) -> None:
    assert await store.pragmas() == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }
    assert raw(tmp_path / "batchd.db", "PRAGMA application_id") == [(APPLICATION_ID,)]


async def test_unsafe_settings_fail_fast() -> None:
    store = SqliteJobStore(Path(":memory:"))  # an in-memory database cannot use WAL
    with pytest.raises(StoreError):
        await store.open()


def test_pragma_problems_name_every_wrong_setting() -> None:
    good = sqlite_db.expected_pragmas()
    assert sqlite_db.pragma_problems(good) == []
    bad = {**good, "synchronous": 1, "journal_mode": "delete"}
    assert len(sqlite_db.pragma_problems(bad)) == 2


async def test_fresh_database_migrates_to_the_latest_version(tmp_path: Path) -> None:
    seen: list[int] = []
    store = SqliteJobStore(tmp_path / "new.db", on_migration=seen.append)
    with capture_logs() as logs:
        await store.open()
    migrations = load_migrations()
    assert await store.schema_version() == len(migrations) == len(seen)
    assert seen == [m.version for m in migrations]
    assert [e["version"] for e in logs if e["event"] == "store.migrating"] == seen
    await store.close()

    again = SqliteJobStore(tmp_path / "new.db", on_migration=seen.append)
    await again.open()
    assert len(seen) == len(migrations)  # nothing left to migrate
    assert raw(tmp_path / "new.db", "SELECT version FROM schema_history") == [
        (m.version,) for m in migrations
    ]
    await again.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    store = SqliteJobStore(path)
    await store.open()
    await store.close()
    raw(path, "PRAGMA user_version = 99")

    with pytest.raises(StoreError):
        await SqliteJobStore(path).open()
    assert raw(path, "PRAGMA user_version") == [(99,)]


async def test_a_failed_migration_leaves_the_old_version_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    store = SqliteJobStore(path)
    await store.open()
    await store.close()
    before = schema(path)
    shipped = load_migrations()
    broken = Migration(
        len(shipped) + 1,
        "broken",
        (
            "CREATE TABLE extra (x INTEGER)",
            "ALTER TABLE jobs ADD COLUMN extra INTEGER",
            "INSERT INTO no_such_table VALUES (1)",
        ),
    )

    db = Database(path)
    await db.open_writer()
    try:
        with pytest.raises(StoreError):
            await migrate(db, [*shipped, broken], now=NOW)
    finally:
        await db.close()

    assert raw(path, "PRAGMA user_version") == [(len(shipped),)]
    assert schema(path) == before


async def test_a_foreign_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw(path, "CREATE TABLE notes (body TEXT)")
    with pytest.raises(StoreError):
        await SqliteJobStore(path).open()
    assert raw(path, "PRAGMA journal_mode") == [("delete",)]
    assert raw(path, "PRAGMA user_version") == [(0,)]


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, just some text\n" * 100)
    with pytest.raises(StoreError):
        await SqliteJobStore(path).open()


async def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteJobStore(tmp_path / "missing" / "batchd.db").open()


async def test_open_twice_is_harmless(store: SqliteJobStore) -> None:
    await store.open()
    assert await store.schema_version() == len(load_migrations())


async def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "batchd.db")
    with pytest.raises(StoreError):
        await store.get_job("job_x")
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.append_event(EventSpec("t.x"), now=NOW)


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    store = SqliteJobStore(path)
    await store.open()
    _, jobs = await accepted(store, 3)
    await drive(store, jobs[0], JobState.RUNNING)
    [event, *_] = await store.list_events()
    await store.fan_out(event.id, ["hook"], now=NOW)
    before = await snapshot(store)
    await store.close()

    reopened = SqliteJobStore(path)
    await reopened.open()
    assert await snapshot(reopened) == before
    assert await reopened.integrity_check() == []
    await reopened.close()


async def test_reads_never_see_an_open_transaction(store: SqliteJobStore) -> None:
    event_id = "evt_uncommitted"
    params = (event_id, "t.x", NOW, None, None, "{}", b"{}")
    inside, release = threading.Event(), threading.Event()

    def body(tx: Tx) -> None:
        tx.run(INSERT_EVENT, params)
        inside.set()
        release.wait(10)

    writing = asyncio.create_task(store._db.write(body))
    assert await asyncio.to_thread(inside.wait, 10)
    assert await store.get_event(event_id) is None  # another connection: committed only
    release.set()
    await writing
    assert await store.get_event(event_id) is not None


async def test_a_failing_transaction_rolls_back_as_a_whole(store: SqliteJobStore) -> None:
    def body(tx: Tx) -> None:
        tx.run(INSERT_EVENT, ("evt_rolled_back", "t.x", NOW, None, None, "{}", b"{}"))
        tx.run("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError):
        await store._db.write(body)

    kept = await store.append_event(EventSpec("t.after"), now=NOW)
    assert [e.id for e in await store.list_events()] == [kept.id]


async def test_a_cancelled_caller_never_leaves_a_transaction_open(store: SqliteJobStore) -> None:
    inside, release = threading.Event(), threading.Event()

    def body(tx: Tx) -> None:
        tx.run(INSERT_EVENT, ("evt_whole", "t.x", NOW, None, None, "{}", b"{}"))
        inside.set()
        release.wait(10)

    task = asyncio.create_task(store._db.write(body))
    assert await asyncio.to_thread(inside.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()

    # The transaction ended as a whole (here: committed) before the next one began.
    kept = await store.append_event(EventSpec("t.after"), now=NOW)
    assert [e.id for e in await store.list_events()] == ["evt_whole", kept.id]


async def test_concurrent_writers_do_not_interleave(store: SqliteJobStore) -> None:
    _, jobs = await accepted(store, 50)

    async def work(i: int) -> None:
        job = jobs[i]
        await store.transition_job(
            job.id,
            JobState.NEW,
            JobState.CREATING,
            now=NOW,
            event=EventSpec("t.creating", {"i": i}),
        )
        await store.append_event(EventSpec("t.note", {"i": i}), now=NOW, job_id=job.id)
        await store.transition_job(
            job.id, JobState.CREATING, JobState.PENDING, now=NOW, event=EventSpec("batch.created")
        )

    await asyncio.gather(*(work(i) for i in range(50)))

    events = await store.list_events(limit=1000)
    assert len(events) == 1 + 3 * 50
    assert {j.state for j in await store.list_jobs()} == {JobState.PENDING}
    assert await store.integrity_check() == []


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    """Start another process that holds the write lock for ``hold_s`` seconds."""
    children: list[subprocess.Popen[str]] = []
    yield tmp_path / "batchd.db", children
    for child in children:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def hold_write_lock(path: Path, hold_s: float) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE endpoints SET consecutive_failures = consecutive_failures")
        print("locked", flush=True)
        time.sleep({hold_s})
        conn.execute("COMMIT")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


async def test_another_process_holding_the_lock_briefly_is_waited_for(
    store: SqliteJobStore, lock_holder: tuple[Path, list[subprocess.Popen[str]]]
) -> None:
    path, children = lock_holder
    children.append(hold_write_lock(path, 0.3))

    event = await store.append_event(EventSpec("t.x"), now=NOW)

    assert await store.get_event(event.id) == event
    assert children[0].wait(timeout=10) == 0


async def test_a_lock_held_too_long_becomes_a_store_error(
    tmp_path: Path,
    lock_holder: tuple[Path, list[subprocess.Popen[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_MS", 50)
    path, children = lock_holder
    store = SqliteJobStore(path)
    await store.open()
    try:
        children.append(hold_write_lock(path, 30))
        with capture_logs() as logs, pytest.raises(StoreError):
            await store.append_event(EventSpec("t.x"), now=NOW)
        busy = [e for e in logs if e["event"] == "store.busy"]
        assert [e["attempt"] for e in busy] == list(range(1, sqlite_db.BEGIN_ATTEMPTS))
        children[0].kill()
        children[0].wait()
        assert (await store.append_event(EventSpec("t.y"), now=NOW)).type == "t.y"
    finally:
        await store.close()


async def test_integrity_check_is_empty_on_a_sound_database(store: SqliteJobStore) -> None:
    await accepted(store, 2)
    assert await store.integrity_check() == []


async def test_commands_open_without_migrating_and_refuse_another_version(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    with pytest.raises(StoreError, match="no batchd database"):
        await SqliteJobStore(path, migrate=False).open()
    assert not path.exists()  # not created by a command

    daemon = SqliteJobStore(path)
    await daemon.open()
    await daemon.close()
    latest = len(load_migrations())
    command = SqliteJobStore(path, migrate=False)
    await command.open()
    assert await command.schema_version() == latest
    await command.close()

    raw(path, f"PRAGMA user_version = {latest - 1}")  # as if written by the previous release
    before = schema(path)
    with pytest.raises(SchemaMismatch) as err:
        await SqliteJobStore(path, migrate=False).open()
    assert (err.value.found, err.value.expected) == (latest - 1, latest)
    assert "batchd run" in str(err.value)
    assert raw(path, "PRAGMA user_version") == [(latest - 1,)]  # not migrated by a command
    assert schema(path) == before


async def test_a_new_database_gives_pruned_space_back(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    store = SqliteJobStore(path)
    await store.open()
    try:
        assert raw(path, "PRAGMA auto_vacuum") == [(2,)]  # incremental
        for i in range(400):
            await store.append_event(
                EventSpec("batch.created", {"pad": "x" * 2000, "i": i}), now=1.0
            )
        events = await store.unfanned_events(limit=1000)
        for event in events:
            await store.fan_out(event.id, [], now=1.0)
        before = path.stat().st_size
        counts = await store.prune(events_before=2.0, rows_before=None, apply=True)
        assert counts.events == 400
        freed = await store.compact()
        assert freed > 1_000_000
        await store.close()
        assert path.stat().st_size < before - 1_000_000
    finally:
        await store.close()


async def test_a_full_compaction_switches_an_old_database_to_incremental(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    raw(path, "PRAGMA auto_vacuum = NONE")
    raw(path, "PRAGMA user_version = 0")
    store = SqliteJobStore(path)
    await store.open()
    try:
        await store.compact(full=True)
        assert raw(path, "PRAGMA auto_vacuum") == [(2,)]
    finally:
        await store.close()
