"""What is shared apart from what one host saw: the deployment's id (the provider tag) and a
submission's origin (source-specific JSON), in every store; and, for SQLite, migration 0006
moving the drop folder's old columns into a folder origin."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from batchd.errors import StoreError
from batchd.folder_origin import FolderOrigin, Host
from batchd.store.base import JobStore
from batchd.store.migrate import load_migrations, migrate
from batchd.store.sqlite import SqliteJobStore
from batchd.store.sqlite_db import Database

from .conftest import NOW, claimed, new_submission, origin


async def test_the_first_proposed_deployment_id_is_kept(store: JobStore) -> None:
    assert await store.deployment_id("bdfirst", now=NOW) == "bdfirst"
    assert await store.deployment_id("bdsecond", now=NOW + 1) == "bdfirst"


async def test_two_daemons_opening_one_new_store_agree_on_its_id(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    one, two = SqliteJobStore(path), SqliteJobStore(path)
    await one.open()
    await two.open()
    try:
        ids = await asyncio.gather(
            *(s.deployment_id(f"bd{i}", now=NOW) for i, s in enumerate([one, two] * 3))
        )
        assert len(set(ids)) == 1
        assert await two.deployment_id("bdlate", now=NOW) == ids[0]
    finally:
        await one.close()
        await two.close()


async def test_an_origin_is_kept_as_json_and_read_back(store: JobStore) -> None:
    nested = {"source": "amqp", "queue": "in", "ids": [1, 2], "headers": {"k": "v"}}
    sub = await store.begin_claim(new_submission(origin=nested), now=NOW)
    assert sub.origin == nested
    assert (await store.get_submission(sub.id)) == sub
    folder = await claimed(store, name="b.jsonl")
    assert folder.origin == origin("b.jsonl")
    none = await store.begin_claim(new_submission(name="c.jsonl", origin=None), now=NOW)
    assert none.origin is None
    assert (await store.get_submission(none.id)) == none


@pytest.mark.parametrize(
    "bad", [{}, {"source": ""}, {"source": 3}, {"source": "x", "n": NOW * 0 + float("nan")}]
)
async def test_an_origin_must_be_json_naming_its_source(
    store: JobStore, bad: dict[str, object]
) -> None:
    with pytest.raises(StoreError):
        await store.begin_claim(new_submission(origin=bad), now=NOW)
    assert await store.list_submissions() == []


async def test_a_folder_origin_is_acted_on_by_the_host_that_saw_it(store: JobStore) -> None:
    mine = await claimed(store, name="a.jsonl", origin={**origin("a.jsonl"), "host": "h1"})
    theirs = await claimed(store, name="b.jsonl", origin={**origin("b.jsonl"), "host": "h2"})
    legacy = {k: v for k, v in origin("c.jsonl").items() if k != "host"}
    older = await claimed(store, name="c.jsonl", origin=legacy)
    queued = await claimed(store, name="d.jsonl", origin={"source": "amqp"})
    first_host, second_host = Host("h1", "h1"), Host("h2", "h1")
    assert [first_host.sees(s) for s in (mine, theirs, older, queued)] == [1, 0, 1, 0]
    assert [second_host.sees(s) for s in (mine, theirs, older, queued)] == [0, 1, 0, 0]
    found = FolderOrigin.of(older)
    assert found is not None and (found.host, found.ino) == (None, 99)


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[1] for r in conn.execute("PRAGMA table_info(submissions)")]


async def test_migration_6_moves_the_folder_columns_into_an_origin(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    shipped = load_migrations()
    db = Database(path)
    await db.open_writer()
    try:
        await migrate(db, shipped[:5], now=NOW)  # the schema before origins
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO submissions (id, route, name, state, provider, endpoint, timeout_hours,"
            " inbox_path, processing_path, file_dev, file_ino, created_at) VALUES"
            " ('sub_1', 'chat', 'a\"b.jsonl', 'claimed', 'p', '/v1/x', 24, '/s/inbox/a\"b.jsonl',"
            " '/s/processing/7-a\"b.jsonl', 3, 7, 1.0),"
            " ('sub_2', 'chat', 'c.jsonl', 'done', 'p', '/v1/x', 24, NULL, NULL, NULL, NULL, 1.0)"
        )
    store = SqliteJobStore(path)
    await store.open()
    try:
        old = await store.get_submission("sub_1")
        assert old is not None and old.origin == {
            "source": "folder",
            "inbox": '/s/inbox/a"b.jsonl',
            "processing": '/s/processing/7-a"b.jsonl',
            "dev": 3,
            "ino": 7,
        }
        assert Host("bdold", "bdold").sees(old)  # seen by the install that was there
        none = await store.get_submission("sub_2")
        assert none is not None and none.origin is None
    finally:
        await store.close()
    gone = {"inbox_path", "processing_path", "file_dev", "file_ino"}
    assert "origin" in _columns(path) and not gone & set(_columns(path))
