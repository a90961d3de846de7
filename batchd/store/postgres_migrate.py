"""Schema migrations of the PostgreSQL store: ``migrations_pg/NNNN_<what>.sql`` and the
``schema_history`` table (one row per version applied).

``migrate`` runs in one transaction that first takes a transaction-level advisory lock keyed by
the schema's name: two instances starting together queue on the lock, the first applies the
pending files, the second then finds nothing to do. PostgreSQL's DDL is transactional, so a
crash in the middle leaves the previous version intact and the next start runs it again.

A schema newer than the files this code ships is refused (an older batchd must not write to a
schema it does not understand), and so is a schema holding tables but no ``schema_history``
(not a batchd database: nothing is touched).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import structlog

from batchd.errors import SchemaMismatch, StoreError
from batchd.store.postgres_db import Database, Tx

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# The advisory lock's key: one per schema (a database may hold several batchd schemas).
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('batchd.migrate.' || current_schema(), 0))"
_HISTORY = (
    "SELECT count(*) AS n FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = 'schema_history'"
)
_TABLES = (
    "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = current_schema()"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise StoreError(f"migrations must be numbered 1..N without gaps, found {versions}")


def split_statements(script: str) -> tuple[str, ...]:
    """Statements end with ``;`` at the end of a line (no functions with bodies here)."""
    statements: list[str] = []
    buffer: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") and not buffer:
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(buffer).strip().removesuffix(";"))
            buffer = []
    if any(part.strip() and not part.strip().startswith("--") for part in buffer):
        raise StoreError(f"migration ends with an incomplete statement: {buffer[0][:80]!r}")
    return tuple(statements)


def load_migrations() -> list[Migration]:
    folder = resources.files("batchd.store") / "migrations_pg"
    found: list[Migration] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _NAME.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], split_statements(text)))
    check_sequence(found)
    return found


async def _version(tx: Tx) -> int | None:
    """The schema's version; None for an empty schema. Refuses a foreign one."""
    history = await tx.row(_HISTORY)
    if history is None or not history["n"]:
        tables = await tx.row(_TABLES)
        if tables is not None and tables["n"]:
            raise StoreError(
                "the database schema holds tables but no schema_history: not a batchd "
                "database; refusing to touch it (point store.url at an empty schema)"
            )
        return None
    row = await tx.row("SELECT coalesce(max(version), 0) AS v FROM schema_history")
    return int(row["v"]) if row is not None else 0


async def schema_version(db: Database) -> int:
    """The version applied (0: none yet)."""
    return await db.write(_read_version, what="read the schema version")


async def _read_version(tx: Tx) -> int:
    return (await _version(tx)) or 0


async def migrate(
    db: Database, *, now: float, on_migration: Callable[[int], None] | None = None
) -> int:
    """Bring the schema to the last migration under the advisory lock; the resulting version."""
    migrations = load_migrations()
    latest = len(migrations)

    async def body(tx: Tx) -> int:
        await tx.run(LOCK)
        current = (await _version(tx)) or 0
        if current > latest:
            raise StoreError(
                f"{db.shown} has schema version {current}, but this batchd only knows versions "
                f"up to {latest}: upgrade batchd (or restore a backup made before the upgrade)"
            )
        for migration in migrations[current:]:
            if on_migration is not None:
                on_migration(migration.version)
            log.info("store.migrating", version=migration.version, migration=migration.name)
            for statement in migration.statements:
                await tx.run(statement)
            await tx.run(
                "INSERT INTO schema_history (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, now),
            )
        return latest

    return await db.write(body, what="migrate")


async def check_version(db: Database) -> int:
    """For a reader: the schema must be exactly this code's (``SchemaMismatch`` otherwise)."""
    found = await schema_version(db)
    expected = len(load_migrations())
    if found != expected:
        raise SchemaMismatch(db.shown, found, expected)
    return found
