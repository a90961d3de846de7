"""The SQLite connections under ``SqliteJobStore``: one writer, one reader, transactions.

* **Writes** go through ``Database.write()``: one ``asyncio.Lock`` (the single writer), then
  ``BEGIN IMMEDIATE`` (retried a few times on ``SQLITE_BUSY``, which another process such as
  ``batchd cancel`` can cause), the verb's statements, ``COMMIT``; ``ROLLBACK`` on any error
  or cancellation.
* **Reads** go to a second, ``query_only`` connection, one statement per call
  (``execute_fetchall``). aiosqlite runs every statement of a connection on that connection's
  thread in queue order, so a read queued on the *writer* while another task's transaction is
  open would see uncommitted rows. The reader connection is another SQLite connection: in WAL
  mode it sees only committed data, never blocks the writer, and is never blocked by it. Because
  each read is one whole statement, it is one consistent snapshot, and a read issued after a
  verb returned sees that verb's commit.

``sqlite3`` errors never leave this module's callers: they become ``StoreError`` (chained).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from batchd.errors import StoreError

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_MS = 5000
BEGIN_ATTEMPTS = 3  # each one waits up to BUSY_TIMEOUT_MS inside SQLite first
APPLICATION_ID = 0x62746368  # "btch" at offset 68 of the header: a batchd database

Params = Sequence[Any] | Mapping[str, Any]


def expected_pragmas() -> dict[str, object]:
    return {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "busy_timeout": BUSY_TIMEOUT_MS,
        "foreign_keys": 1,
    }


def pragma_problems(found: Mapping[str, object]) -> list[str]:
    """Settings that did not take (the database must not be used then)."""
    return [
        f"PRAGMA {name} is {found.get(name)!r}, expected {want!r}"
        for name, want in expected_pragmas().items()
        if found.get(name) != want
    ]


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def _is_nested(exc: sqlite3.Error) -> bool:
    return "within a transaction" in str(exc)


class Tx:
    """Statements inside one write transaction (on the writer connection)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def run(self, sql: str, params: Params = ()) -> int:
        """Execute one statement; rows changed."""
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def many(self, sql: str, rows: Iterable[Params]) -> int:
        cursor = await self._conn.executemany(sql, rows)
        return cursor.rowcount

    async def rows(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def row(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        found = await self.rows(sql, params)
        return found[0] if found else None


class Database:
    """One SQLite file: a writer connection behind a lock and a read-only reader connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    # ------------------------------------------------------------------ open / close
    async def open_writer(self) -> None:
        """Connect, refuse a foreign file, apply and verify the settings."""
        self._writer = await self._connect()
        try:
            await self._check_foreign(self._writer)
            await self._configure(self._writer)
        except BaseException:
            await self.close()
            raise

    async def open_reader(self) -> None:
        self._reader = await self._connect()
        try:
            await self._reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await self._reader.execute("PRAGMA query_only = ON")
            mode = await self._scalar(self._reader, "PRAGMA journal_mode")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot configure the reader of {self.path}: {exc}") from exc
        if mode != "wal":
            raise StoreError(f"{self.path}: reader sees journal_mode {mode!r}, expected 'wal'")

    async def _connect(self) -> aiosqlite.Connection:
        if not self.path.parent.is_dir():
            # Checked here because a failed aiosqlite.connect leaves its worker thread to
            # report to an event loop that may be closed by then (a traceback on stderr).
            raise StoreError(f"cannot open the database {self.path}: its folder does not exist")
        try:
            conn = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        return conn

    async def _check_foreign(self, conn: aiosqlite.Connection) -> None:
        try:
            app_id = await self._scalar(conn, "PRAGMA application_id")
            version = await self._scalar(conn, "PRAGMA user_version")
            objects = await self._scalar(conn, "SELECT count(*) FROM sqlite_master")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        fresh = app_id == 0 and version == 0 and objects == 0
        if app_id != APPLICATION_ID and not fresh:
            raise StoreError(
                f"{self.path} is not a batchd database (application_id {app_id:#x}, "
                f"user_version {version}); refusing to touch it"
            )

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot configure the database {self.path}: {exc}") from exc
        problems = pragma_problems(await self.pragmas())
        if problems:
            raise StoreError(f"{self.path}: unsafe SQLite settings: {'; '.join(problems)}")

    async def pragmas(self) -> dict[str, object]:
        """The writer connection's durability settings, read back from SQLite."""
        conn = self._require(self._writer)
        try:
            return {name: await self._scalar(conn, f"PRAGMA {name}") for name in expected_pragmas()}
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the settings of {self.path}: {exc}") from exc

    async def close(self) -> None:
        async with self._lock:
            writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
            for conn in (reader, writer):
                if conn is not None:
                    try:
                        await conn.close()
                    except sqlite3.Error as exc:
                        log.warning("store.close_failed", path=str(self.path), error=str(exc))

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def _require(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError(f"the store {self.path} is not open")
        return conn

    @staticmethod
    async def _scalar(conn: aiosqlite.Connection, sql: str) -> Any:
        rows = list(await conn.execute_fetchall(sql))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ reads
    async def fetch(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run one read statement on the reader connection (committed data only)."""
        conn = self._require(self._reader or self._writer)
        try:
            return list(await conn.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:  # ValueError: closed under us
            raise StoreError(f"read failed: {exc}") from exc

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ writes
    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` under the writer lock."""
        async with self._lock:
            conn = self._require(self._writer)
            await self._begin(conn)
            try:
                yield Tx(conn)
            except BaseException as exc:
                await _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"write failed: {exc}") from exc
                raise
            try:
                await conn.execute("COMMIT")
            except BaseException as exc:
                await _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"commit failed: {exc}") from exc
                raise

    async def _begin(self, conn: aiosqlite.Connection) -> None:
        for attempt in range(1, BEGIN_ATTEMPTS + 1):
            try:
                await conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if _is_nested(exc):  # a cancelled task left one open: it was never committed
                    log.warning("store.stale_transaction_rolled_back", path=str(self.path))
                    await _rollback(conn)
                elif not _is_busy(exc) or attempt == BEGIN_ATTEMPTS:
                    raise StoreError(f"cannot start a write transaction: {exc}") from exc
                else:
                    log.warning("store.busy", path=str(self.path), attempt=attempt)
                    await asyncio.sleep(0.05 * attempt)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot start a write transaction: {exc}") from exc
        raise StoreError("cannot start a write transaction: the database stays locked")


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Queue a ROLLBACK and wait for it, even if the calling task is being cancelled.

    aiosqlite runs a connection's calls in order, so once queued it runs before any later
    ``BEGIN``. "No transaction is active" (BEGIN itself failed) is fine."""
    try:
        await asyncio.shield(conn.execute("ROLLBACK"))
    except sqlite3.Error:
        pass
    except ValueError:  # the connection was closed under us
        pass
