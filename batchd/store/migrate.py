"""Schema migrations by ``PRAGMA user_version``.

The SQL files in ``batchd/store/migrations/`` are named ``NNNN_<what>.sql`` and numbered from
1 without gaps; the database's ``user_version`` is the number of the last one applied. Each
pending file runs in its own ``BEGIN IMMEDIATE`` transaction together with the
``user_version`` bump (and, for the first, the ``application_id``), so a crash in the middle of
a migration leaves the previous version intact and the next start simply runs it again.

A database whose ``user_version`` is newer than the files this code ships is refused: an older
batchd must not write to a schema it does not understand.

Migrations cannot toggle ``PRAGMA foreign_keys`` (SQLite ignores it inside a transaction);
one that rebuilds a table must keep the references valid on its own.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import structlog

from batchd.errors import StoreError
from batchd.store.sqlite_db import APPLICATION_ID, Database, Tx

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """Split a script into statements. Each statement ends at the end of a line."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if any(line.strip() and not line.strip().startswith("--") for line in buffer.splitlines()):
        raise StoreError(f"migration ends with an incomplete statement: {buffer.strip()[:80]!r}")
    return tuple(statements)


def load_migrations() -> list[Migration]:
    """The migrations shipped with this package, in order (checked: 1..N without gaps)."""
    folder = resources.files("batchd.store") / "migrations"
    found: list[Migration] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _NAME.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], split_statements(text)))
    check_sequence(found)
    return found


def check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise StoreError(f"migrations must be numbered 1..N without gaps, found {versions}")


async def user_version(db: Database) -> int:
    row = await db.fetch_one("PRAGMA user_version")
    return int(row[0]) if row else 0


async def migrate(
    db: Database,
    migrations: Sequence[Migration],
    *,
    now: float,
    on_migration: Callable[[int], None] | None = None,
) -> int:
    """Bring the database to the last migration; returns the resulting version.

    ``on_migration(version)`` is called before each pending migration runs (the daemon logs
    it; its start timeout is kept extended around the whole ``open()``)."""
    check_sequence(migrations)
    current, latest = await user_version(db), len(migrations)
    if current > latest:
        raise StoreError(
            f"{db.path} has schema version {current}, but this batchd only knows versions up to "
            f"{latest}: upgrade batchd (or restore a backup made before the upgrade)"
        )
    for migration in migrations[current:]:
        if on_migration is not None:
            on_migration(migration.version)
        log.info("store.migrating", version=migration.version, migration=migration.name)
        await _apply(db, migration, now=now)
    return latest


async def _apply(db: Database, migration: Migration, *, now: float) -> None:
    def body(tx: Tx) -> None:
        for statement in migration.statements:
            tx.run(statement)
        if migration.version == 1:
            tx.run(f"PRAGMA application_id = {APPLICATION_ID:d}")
        tx.run(f"PRAGMA user_version = {migration.version:d}")
        tx.run(
            "INSERT INTO schema_history (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, now),
        )

    await db.write(body)
