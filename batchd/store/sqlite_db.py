"""The SQLite connections under ``SqliteJobStore``: one writer, one reader, transactions.

* **Writes** go through ``Database.write(body)``: the writer connection lives on one thread of
  its own, and a whole transaction runs there in one call: ``BEGIN IMMEDIATE`` (retried a few
  times on ``SQLITE_BUSY``, which another process such as ``batchd cancel`` can cause), the
  verb's ``body(tx)``, ``COMMIT``, or ``ROLLBACK`` if the body raises. Transactions are
  serialised by that thread, never interleaved, and never left open: a caller cancelled while
  its transaction runs gets ``CancelledError`` and the transaction still ends as a whole. One
  trip to the thread per transaction, not one per statement: with a statement per trip, the
  write lock was held across several event-loop turns, and it was the bottleneck of intake
  (tests/benchmarks, intake).
* **Reads** go to a second, ``query_only`` connection (aiosqlite), one statement per call
  (``execute_fetchall``). In WAL mode it sees only committed data, never blocks the writer, and
  is never blocked by it. Because each read is one whole statement, it is one consistent
  snapshot, and a read issued after a verb returned sees that verb's commit.

``sqlite3`` errors never leave this module's callers: they become ``StoreError`` (chained).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from batchd.errors import StoreError

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_MS = 5000
BEGIN_ATTEMPTS = 3  # each one waits up to BUSY_TIMEOUT_MS inside SQLite first
APPLICATION_ID = 0x62746368  # "btch" at offset 68 of the header: a batchd database

Params = Sequence[Any] | Mapping[str, Any]


AUTO_VACUUM_INCREMENTAL = 2


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


class Tx:
    """Statements inside one write transaction (on the writer thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Params = ()) -> int:
        """Execute one statement; rows changed."""
        return self._conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Iterable[Params]) -> int:
        return self._conn.executemany(sql, rows).rowcount

    def rows(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def row(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None


T = TypeVar("T")


class Database:
    """One SQLite file: a writer connection on a thread of its own, and a read-only reader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    # ------------------------------------------------------------------ open / close
    async def open_writer(self) -> None:
        """Connect, refuse a foreign file, apply and verify the settings."""
        self._check_folder()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batchd-sqlite-writer")
        try:
            self._writer = await self._on_writer(self._connect_writer)
            await self._on_writer(self._check_foreign)
            await self._on_writer(self._configure)
            _refuse_unsafe(self.path, await self.pragmas())
        except BaseException:
            await self.close()
            raise

    async def open_reader(self) -> None:
        self._check_folder()
        try:
            self._reader = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._reader.row_factory = sqlite3.Row
            await self._reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await self._reader.execute("PRAGMA query_only = ON")
            rows = list(await self._reader.execute_fetchall("PRAGMA journal_mode"))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot configure the reader of {self.path}: {exc}") from exc
        mode = rows[0][0] if rows else None
        if mode != "wal":
            raise StoreError(f"{self.path}: reader sees journal_mode {mode!r}, expected 'wal'")

    def _check_folder(self) -> None:
        if not self.path.parent.is_dir():
            # Checked here because a failed aiosqlite.connect leaves its worker thread to
            # report to an event loop that may be closed by then (a traceback on stderr).
            raise StoreError(f"cannot open the database {self.path}: its folder does not exist")

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread."""
        if self._executor is None:
            raise StoreError(f"the store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            _private_files(self.path)  # before SQLite creates the file with the umask's mode
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _check_foreign(self) -> None:
        conn = self._require(self._writer)
        try:
            app_id = _scalar(conn, "PRAGMA application_id")
            version = _scalar(conn, "PRAGMA user_version")
            objects = _scalar(conn, "SELECT count(*) FROM sqlite_master")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        fresh = app_id == 0 and version == 0 and objects == 0
        if app_id != APPLICATION_ID and not fresh:
            raise StoreError(
                f"{self.path} is not a batchd database (application_id {app_id:#x}, "
                f"user_version {version}); refusing to touch it"
            )

    def _configure(self) -> None:
        conn = self._require(self._writer)
        try:
            if _scalar(conn, "SELECT count(*) FROM sqlite_master") == 0:
                # A new file: deleted rows' pages can be given back later (``vacuum``).
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot configure the database {self.path}: {exc}") from exc

    async def pragmas(self) -> dict[str, object]:
        """The writer connection's durability settings, read back from SQLite."""

        def read() -> dict[str, object]:
            conn = self._require(self._writer)
            try:
                return {name: _scalar(conn, f"PRAGMA {name}") for name in expected_pragmas()}
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the settings of {self.path}: {exc}") from exc

        return await self._on_writer(read)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                await reader.close()
            except sqlite3.Error as exc:
                log.warning("store.close_failed", path=str(self.path), error=str(exc))
        executor = self._executor
        if executor is None:
            return

        def close_writer() -> None:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.close()
                except sqlite3.Error as exc:
                    log.warning("store.close_failed", path=str(self.path), error=str(exc))

        # Queued after every transaction already submitted: they finish first.
        await asyncio.shield(self._on_writer(close_writer))
        self._executor = None
        executor.shutdown(wait=False)

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    def _require(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StoreError(f"the store {self.path} is not open")
        return conn

    # ------------------------------------------------------------------ reads
    async def fetch(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run one read statement on the reader connection (committed data only)."""
        if self._reader is None:
            return await self._on_writer(lambda: self._fetch_on_writer(sql, params))
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:  # ValueError: closed under us
            raise StoreError(f"read failed: {exc}") from exc

    def _fetch_on_writer(self, sql: str, params: Params) -> list[sqlite3.Row]:
        try:
            return self._require(self._writer).execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def vacuum(self, *, full: bool) -> int:
        """Give free pages back to the file system; returns the bytes freed. Incremental when
        the file has ``auto_vacuum = INCREMENTAL`` (every file created since schema 2); ``full``
        rewrites the whole file (``VACUUM``), switching an older file to incremental."""

        def run() -> int:
            conn = self._require(self._writer)
            try:
                page_size = int(_scalar(conn, "PRAGMA page_size"))
                before = int(_scalar(conn, "PRAGMA page_count"))
                if full:
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    conn.execute("VACUUM")
                elif _scalar(conn, "PRAGMA auto_vacuum") == AUTO_VACUUM_INCREMENTAL:
                    # executescript steps the pragma to the end (execute frees one page)
                    conn.executescript("PRAGMA incremental_vacuum;")
                return (before - int(_scalar(conn, "PRAGMA page_count"))) * page_size
            except sqlite3.Error as exc:
                raise StoreError(f"cannot compact {self.path}: {exc}") from exc

        return await self._on_writer(run)

    # ------------------------------------------------------------------ writes
    async def write(self, body: Callable[[Tx], T]) -> T:
        """One write transaction: ``BEGIN IMMEDIATE``, ``body(tx)``, ``COMMIT`` on the writer
        thread; ``ROLLBACK`` if the body raises. Returns what the body returns."""
        return await self._on_writer(lambda: self._transaction(body))

    def _transaction(self, body: Callable[[Tx], T]) -> T:
        conn = self._require(self._writer)
        self._begin(conn)
        try:
            result = body(Tx(conn))
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"write failed: {exc}") from exc
            raise
        return result

    def _begin(self, conn: sqlite3.Connection) -> None:
        for attempt in range(1, BEGIN_ATTEMPTS + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == BEGIN_ATTEMPTS:
                    raise StoreError(f"cannot start a write transaction: {exc}") from exc
                log.warning("store.busy", path=str(self.path), attempt=attempt)
                time.sleep(0.05 * attempt)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot start a write transaction: {exc}") from exc
        raise StoreError("cannot start a write transaction: the database stays locked")


def _scalar(conn: sqlite3.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _rollback(conn: sqlite3.Connection) -> None:
    """ "No transaction is active" (the commit itself failed after ending it) is fine."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _private_files(path: Path) -> None:
    """The database 0600, whatever the umask: created so before SQLite opens it, and made so if
    it was not (SQLite gives its -wal and -shm files the database's mode)."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return  # not a file of ours (tests, URIs)
    if not os.path.lexists(path):
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            os.close(os.open(path, flags, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create the database {path}: {exc.strerror}") from exc
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(OSError):  # absent, or another user's (batchd check): as is
            info = file.lstat()
            mine = stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
            if mine and stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(file, 0o600)


def _refuse_unsafe(path: Path, found: Mapping[str, object]) -> None:
    problems = pragma_problems(found)
    if problems:
        raise StoreError(f"{path}: unsafe SQLite settings: {'; '.join(problems)}")
