"""``batchd store copy``: a stopped SQLite store's whole state into an empty PostgreSQL one.

Both schemas have the same tables and columns (``migrations/`` and ``migrations_pg/`` mean the
same), so the copy is table by table, the column names both sides have, in insertion order
(``seq``: "newest first" and the outbox order survive). The source is read inside one
``BEGIN IMMEDIATE`` transaction (a consistent snapshot; no writer can slip in), the target is
written in one transaction with ``COPY``, and before that transaction commits every table's
row count and primary keys are compared with the source's: a copy either lands whole and
verified or not at all. A target that holds any row is refused (nothing is merged).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from batchd.errors import StoreError
from batchd.store.migrate import load_migrations
from batchd.store.postgres import PostgresJobStore
from batchd.store.postgres_db import Tx
from batchd.store.sqlite_url import url_path


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: tuple[str, ...]  # the primary key: the ids compared after the copy
    order: str  # the source's insertion order


# Parents before children (the foreign keys hold at every row).
TABLES: Final = (
    Table("submissions", ("id",), "seq"),
    Table("jobs", ("id",), "rowid"),
    Table("events", ("id",), "seq"),
    Table("endpoints", ("name",), "rowid"),
    Table("deliveries", ("event_id", "endpoint"), "event_id, endpoint"),
    Table("duplicate_jobs", ("provider_job_id",), "rowid"),
    Table("task_leases", ("name",), "name"),
    Table("deployment", ("only_row",), "only_row"),  # its id: the tag on the provider's jobs
)
_GENERATED: Final = frozenset({"seq"})  # the target numbers its rows itself, in the same order


@dataclass(slots=True)
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied (and verified)

    def as_dict(self) -> dict[str, Any]:
        return {"copied": dict(self.rows)}


class _Source:
    """The SQLite file, read under ``BEGIN IMMEDIATE`` (writers wait until the copy ends)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"no batchd database at {path}")
        try:
            self.conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        self.path = path

    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def rows(self, table: Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY {table.order}"  # noqa: S608
        return self.conn.execute(sql).fetchall()

    def keys(self, table: Table) -> set[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(table.key)} FROM {table.name}"  # noqa: S608
        return {tuple(r) for r in self.conn.execute(sql)}

    def close(self) -> None:
        try:
            self.conn.execute("ROLLBACK")  # read only: nothing to keep
        finally:
            self.conn.close()


def source_path(url: str) -> Path:
    """The SQLite file a ``sqlite:///...`` URL names (its folder holds the daemon's lock)."""
    return url_path(url)


async def copy_sqlite_to_postgres(source: Path, target_url: str) -> CopyReport:
    """Copy everything from the SQLite file ``source`` into the PostgreSQL store at
    ``target_url`` (its schema created or migrated first, as ``batchd run`` would)."""
    from batchd.store.postgres_url import KIND
    from batchd.store.registry import StoreOptions

    target = KIND.make(target_url, StoreOptions())
    assert isinstance(target, PostgresJobStore)
    src = _Source(source)
    try:
        await target.open()
        expected = len(load_migrations())
        if src.version() != expected:
            raise StoreError(
                f"{source} has schema version {src.version()}, this batchd expects {expected}: "
                "start this batchd on it once (batchd run migrates it), stop it, then copy"
            )
        return await target.database.write(lambda tx: _copy(src, tx), what="copy")
    finally:
        src.close()
        await target.close()


async def _target_columns(tx: Tx, table: str) -> list[str]:
    rows = await tx.rows(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [r["column_name"] for r in rows]


async def _copy(src: _Source, tx: Tx) -> CopyReport:
    for table in TABLES:
        found = await tx.row(f"SELECT count(*) AS n FROM {table.name}")  # noqa: S608
        if found is not None and found["n"]:
            raise StoreError(
                f"the target already holds {found['n']} {table.name} rows: store copy only "
                "fills an empty database (nothing was copied)"
            )
    report = CopyReport()
    for table in TABLES:
        wanted = [c for c in await _target_columns(tx, table.name) if c not in _GENERATED]
        have = set(src.columns(table.name))
        missing = [c for c in wanted if c not in have]
        if missing:
            raise StoreError(f"{src.path}: table {table.name} has no column {missing[0]}")
        rows = src.rows(table, wanted)
        await tx.copy_rows(table.name, wanted, rows)
        await _verify(src, tx, table, len(rows))
        report.rows[table.name] = len(rows)
    return report


async def _verify(src: _Source, tx: Tx, table: Table, count: int) -> None:
    """The target holds exactly the source's rows of ``table`` (count and primary keys)."""
    sql = f"SELECT {', '.join(table.key)} FROM {table.name}"  # noqa: S608
    copied = {tuple(r) for r in await tx.tuples(sql)}
    if len(copied) != count or copied != src.keys(table):
        raise StoreError(
            f"verification failed for {table.name}: {count} rows read, {len(copied)} written "
            "(nothing was copied)"
        )
