"""PostgreSQL-only behaviour on a real server: migrations under an advisory lock, retries after
a lost connection, a statement timeout and a serialization failure, claims by several
instances at once. Each test has a schema of its own (``tests/postgres_schema.py``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from batchd.errors import SchemaMismatch, StoreError
from batchd.models import JobState
from batchd.store import postgres_migrate
from batchd.store.base import EventSpec
from batchd.store.postgres import PostgresJobStore
from batchd.store.postgres_db import Database
from batchd.store.registry import StoreOptions, make_store
from tests.postgres_schema import fresh_schema

from .conftest import NOW, accepted, claimed, drive, new_submission


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as found:
        yield f"{found}&application_name=batchd_t_{uuid.uuid4().hex[:10]}"


def pg_store(url: str, **db: float) -> PostgresJobStore:
    return PostgresJobStore(Database(url, shown="test", **db))  # type: ignore[arg-type]


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresJobStore]:
    s = pg_store(url)
    await s.open()
    yield s
    await s.close()


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def retries(logs: list[MutableMapping[str, Any]]) -> list[object]:
    return [e["sqlstate"] for e in logs if e["event"] == "store.retry"]


# ---------------------------------------------------------------------------- migrations


async def test_a_fresh_schema_migrates_once_and_records_each_version(url: str) -> None:
    seen: list[int] = []
    store = make_store(url, StoreOptions(on_migration=seen.append))
    await store.open()
    await store.close()
    again = make_store(url, StoreOptions(on_migration=seen.append))
    await again.open()
    await again.close()
    shipped = postgres_migrate.load_migrations()
    assert seen == [m.version for m in shipped]  # the second open found nothing to do
    assert sql(url, "SELECT version, name FROM schema_history ORDER BY version") == [
        (m.version, m.name) for m in shipped
    ]


async def test_instances_starting_together_migrate_once(url: str) -> None:
    stores = [pg_store(url) for _ in range(4)]
    with capture_logs() as logs:
        await asyncio.gather(*(s.open() for s in stores))
    migrated = [e["version"] for e in logs if e["event"] == "store.migrating"]
    assert migrated == [m.version for m in postgres_migrate.load_migrations()]
    for s in stores:
        assert await s.schema_version() == len(migrated)
        await s.close()


async def test_a_newer_schema_is_refused_and_left_alone(store: PostgresJobStore, url: str) -> None:
    await store.close()
    sql(url, "INSERT INTO schema_history VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match="only knows versions up to"):
        await pg_store(url).open()
    assert sql(url, "SELECT max(version) FROM schema_history") == [(99,)]


async def test_a_reader_never_migrates_and_says_what_to_do(url: str) -> None:
    reader = make_store(url, StoreOptions(migrate=False))
    with pytest.raises(SchemaMismatch, match="schema version 0, this batchd expects"):
        await reader.open()
    assert sql(url, "SELECT count(*) FROM information_schema.tables "
               "WHERE table_schema = current_schema()") == [(0,)]  # fmt: skip


async def test_a_schema_of_something_else_is_not_touched(url: str) -> None:
    sql(url, "CREATE TABLE invoices (id int)")
    with pytest.raises(StoreError, match="not a batchd database"):
        await pg_store(url).open()
    assert sql(url, "SELECT count(*) FROM information_schema.tables "
               "WHERE table_schema = current_schema()") == [(1,)]  # fmt: skip


async def test_an_unreachable_server_is_a_clear_error_without_the_url_options() -> None:
    store = make_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(StoreError, match=r"cannot connect to the database postgresql://nobody@"):
        await store.open()


# ---------------------------------------------------------------------------- retries


def kill(url: str, where: str = "TRUE") -> int:
    """Terminate the store's own server processes (found by this test's application_name)."""
    app = url.rsplit("application_name=", 1)[1]
    return len(
        sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{app}' AND pid <> pg_backend_pid() AND {where}",
        )
    )


async def test_connections_killed_between_verbs_are_replaced(
    store: PostgresJobStore, url: str
) -> None:
    sub = await claimed(store)
    for i in range(3):
        assert kill(url) >= 1
        await store.append_event(EventSpec("t.n", {"i": i}), now=NOW, submission_id=sub.id)
        assert await store.get_submission(sub.id) == sub
    assert [e.data["i"] for e in await store.list_events()] == [0, 1, 2]


async def test_a_connection_lost_inside_a_transaction_is_retried(
    store: PostgresJobStore, url: str
) -> None:
    sub = await store.begin_claim(new_submission(), now=NOW)
    async with await psycopg.AsyncConnection.connect(url) as other:
        await other.execute("SELECT 1 FROM submissions WHERE id = %s FOR UPDATE", (sub.id,))

        async def cut_then_release() -> None:
            while not kill(url, "wait_event_type = 'Lock'"):  # the verb waits on the lock
                await asyncio.sleep(0.02)
            await other.commit()

        with capture_logs() as logs:
            done, _ = await asyncio.gather(store.mark_claimed(sub.id, now=NOW), cut_then_release())
    assert done.state.value == "claimed"
    assert "57P01" in retries(logs)  # admin_shutdown: the server ended the connection
    assert (await store.get_submission(sub.id)) == done


async def test_a_statement_timeout_is_retried_until_the_lock_is_gone(url: str) -> None:
    store = pg_store(url, statement_timeout_s=0.2)
    await store.open()
    sub = await store.begin_claim(new_submission(), now=NOW)
    async with await psycopg.AsyncConnection.connect(url) as other:
        await other.execute("SELECT 1 FROM submissions WHERE id = %s FOR UPDATE", (sub.id,))

        async def release() -> None:
            await asyncio.sleep(0.5)
            await other.commit()

        with capture_logs() as logs:
            done, _ = await asyncio.gather(store.mark_claimed(sub.id, now=NOW), release())
    assert done.state.value == "claimed"
    assert "57014" in retries(logs)  # query_canceled: the statement timeout
    await store.close()


async def test_a_serialization_failure_is_retried_and_commits_once(
    store: PostgresJobStore, url: str
) -> None:
    sql(url, "CREATE TABLE fail_once (n int)")
    sql(url, "INSERT INTO fail_once VALUES (1)")
    sql(
        url,
        "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM fail_once WHERE n > 0) THEN "
        "RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'; "
        "END IF; RETURN NEW; END $$",
    )
    sql(url, "CREATE TRIGGER fail_once BEFORE INSERT ON events EXECUTE FUNCTION fail_once()")

    async def clear_soon() -> None:
        await asyncio.sleep(0.1)
        sql(url, "UPDATE fail_once SET n = 0")

    with capture_logs() as logs:
        event, _ = await asyncio.gather(
            store.append_event(EventSpec("t.once"), now=NOW), clear_soon()
        )
    assert "40001" in retries(logs)
    assert [e.id for e in await store.list_events()] == [event.id]  # committed exactly once


async def test_an_error_no_retry_can_cure_is_raised_at_once(store: PostgresJobStore) -> None:
    with capture_logs() as logs, pytest.raises(StoreError, match="foreign key"):
        await store.append_event(EventSpec("t.x"), now=NOW, submission_id="sub_missing")
    assert retries(logs) == []


# ---------------------------------------------------------------------------- claims


async def test_instances_claiming_at_once_take_disjoint_jobs(url: str) -> None:
    one, two = pg_store(url), pg_store(url)
    await one.open()
    await two.open()
    _, jobs = await accepted(one, 40)
    for job in jobs:
        await drive(one, job, JobState.PENDING)
    first, second = await asyncio.gather(
        one.claim_due("track", "a", 60, now=NOW + 1, limit=25),
        two.claim_due("track", "b", 60, now=NOW + 1, limit=25),
    )
    ids_a, ids_b = {j.id for j in first}, {j.id for j in second}
    assert not ids_a & ids_b
    assert ids_a | ids_b == {j.id for j in jobs}
    assert all(j.owner == "a" for j in first) and all(j.owner == "b" for j in second)
    await one.close()
    await two.close()


# ---------------------------------------------------------------------------- several instances


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(200):  # 10 s at most: a generous bound, not a timing assertion
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_work_committed_by_one_instance_wakes_the_others(url: str) -> None:
    one, two = pg_store(url), pg_store(url)
    await one.open()
    await two.open()
    woken: list[str] = []
    for topic in ("submit", "track", "collect", "notify"):
        two.on_wakeup(topic, lambda t=topic: woken.append(t))  # type: ignore[misc]

    async def heard(*topics: str) -> bool:
        return set(topics) <= set(woken)

    # Once listening it wakes every loop (what was sent before is not lost): connected now.
    await wait_for(lambda: heard("submit", "track", "collect", "notify"), "listening")
    woken.clear()
    _, [job] = await accepted(one, 1)  # new jobs (submit) and an event (notify)

    await wait_for(lambda: heard("submit", "notify"), "submit and notify")
    assert "track" not in woken and "collect" not in woken
    job = await drive(one, job, JobState.PENDING)  # created at the provider: track it
    await wait_for(lambda: heard("track"), "track")
    await one.transition_job(job.id, job.state, JobState.SUCCEEDED, now=NOW)
    await wait_for(lambda: heard("collect"), "collect")
    await one.close()
    await two.close()


async def test_keep_alive_extends_held_leases_only(url: str) -> None:
    store = pg_store(url)
    await store.open()
    _, jobs = await accepted(store, 3)
    now = time.time()
    held, lapsed = jobs[0], jobs[1]  # jobs[2]: another owner's
    await store.claim_due("submit", "me", 600, now=now)  # all three, then set them apart
    sql(url, f"UPDATE jobs SET lease_until = {now + 1} WHERE id = '{held.id}'")
    sql(url, f"UPDATE jobs SET lease_until = {now - 1} WHERE id = '{lapsed.id}'")
    sql(url, f"UPDATE jobs SET owner = 'other', lease_until = {now + 1} WHERE id = '{jobs[2].id}'")
    store.keep_alive("me", 30.0)  # a round every 10 s: the first one comes only later
    await store._live.renew()  # one round now

    leases = {str(r[0]): float(str(r[1])) for r in sql(url, "SELECT id, lease_until FROM jobs")}
    assert leases[held.id] >= now + 29
    assert leases[lapsed.id] == now - 1  # ran out: it may be another instance's by now
    assert leases[jobs[2].id] == now + 1
    await store.close()
