"""The PostgreSQL connections under ``PostgresJobStore``: a pool, transactions, retries.

* **The driver** is psycopg 3 with ``psycopg_pool`` (libpq underneath): the connection string
  is libpq's, so ``sslmode``, ``sslrootcert``, ``.pgpass``, ``PGPASSWORD``, ``PGSERVICE`` and
  every other libpq setting work as documented by PostgreSQL, with nothing of ours in between.
* **Writes** go through ``Database.write(body)``: one transaction on a pooled connection
  (READ COMMITTED; the verbs lock what they compare with ``FOR UPDATE``, or write ``WHERE
  version = <read>``). The body is an ``async`` function of a ``Tx`` and may run more than once:
  a lost connection, a statement timeout, a serialization failure or a deadlock rolls the
  transaction back and runs the whole body again on a fresh connection (``ATTEMPTS`` times,
  with backoff), so a verb either commits once or raises ``StoreError``. A commit whose answer
  was lost may have landed: the verbs are compare-and-set, so the repeat raises ``StaleState``
  instead of writing twice, and inserts of fresh ids ignore their own earlier row.
* **Reads** are one statement each, outside any transaction (autocommit): a consistent
  snapshot of committed data, retried like writes.

``psycopg`` errors never leave this module's callers: they become ``StoreError`` (chained).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from batchd.errors import StoreError

log = structlog.get_logger(__name__)

ATTEMPTS = 5
BACKOFF_S = (0.05, 0.2, 0.5, 1.0)
CONNECT_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 30.0
POOL_MAX = 4

Params = Sequence[Any] | Mapping[str, Any]
Row = dict[str, Any]
T = TypeVar("T")

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def from_qmark(sql: str) -> str:
    """A statement written for SQLite's ``?`` and ``:name`` placeholders in psycopg's style."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


def retriable(exc: BaseException) -> bool:
    """A failure that running the transaction again may cure: the connection went away (the
    server restarted, the network broke), a statement timed out, or PostgreSQL asked for a
    retry (serialization failure, deadlock)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, pg_errors.QueryCanceled | pg_errors.TransactionRollback):
        return True
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CannotConnectNow):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.DataError)


class Tx:
    """Statements inside one write transaction."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def run(self, sql: str, params: Params | None = None) -> int:
        """Execute one statement; rows changed."""
        async with self._conn.cursor() as cur:
            await cur.execute(sql, params)
            return max(cur.rowcount, 0)

    async def many(self, sql: str, rows: Iterable[Params]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        async with self._conn.cursor() as cur:
            await cur.executemany(sql, rows, returning=False)
            return max(cur.rowcount, 0)

    async def rows(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def row(self, sql: str, params: Params | None = None) -> Row | None:
        found = await self.rows(sql, params)
        return found[0] if found else None

    async def tuples(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        async with self._conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def copy_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """``COPY table (columns) FROM STDIN``: many rows in one round trip (``store copy``).
        ``table`` and ``columns`` are the schema's own names, never input."""
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        async with self._conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                await copy.write_row(row)


class Database:
    """A pool of connections to one PostgreSQL database (``conninfo``: a libpq URL)."""

    def __init__(
        self,
        conninfo: str,
        *,
        shown: str,
        password: str | None = None,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
        pool_max: int = POOL_MAX,
    ) -> None:
        self.shown = shown  # for messages: never a password
        self._conninfo = conninfo
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if password is not None:
            self._kwargs["password"] = password
        self._statement_timeout_ms = max(1, int(statement_timeout_s * 1000))
        self._pool_max = pool_max
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    # ------------------------------------------------------------------ open / close
    async def open(self) -> None:
        """One direct connection first (a refused login or an unknown host fails at once, with
        the server's reason), then the pool."""
        first = await self.connect()
        await first.close()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=self._pool_max,
            open=False,
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT_S,
            reconnect_timeout=0,  # the daemon's loops keep trying; the pool must not give up
            name="batchd-store",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            await pool.close()
            raise StoreError(f"cannot connect to the database {self.shown}: timed out") from None
        self._pool = pool

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"SET statement_timeout = {self._statement_timeout_ms:d}")
        await conn.execute("SET TIME ZONE 'UTC'")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def _require(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise StoreError(f"the store {self.shown} is not open")
        return self._pool

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own, outside the pool (LISTEN, advisory session locks)."""
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=int(CONNECT_TIMEOUT_S), **self._kwargs
            )
        except psycopg.Error as exc:
            reason = _one_line(exc)
            raise StoreError(f"cannot connect to the database {self.shown}: {reason}") from None

    # ------------------------------------------------------------------ statements
    async def write(self, body: Callable[[Tx], Awaitable[T]], *, what: str = "write") -> T:
        """One transaction running ``body(tx)``; run again after a retriable failure."""

        async def once(conn: psycopg.AsyncConnection[Any]) -> T:
            async with conn.transaction():
                return await body(Tx(conn))

        return await self._attempts(once, what)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """One read statement (committed data only)."""

        async def once(conn: psycopg.AsyncConnection[Any]) -> list[Row]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()

        return await self._attempts(once, "read")

    async def fetch_tuples(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        async def once(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(sql, params)
                return await cur.fetchall()

        return await self._attempts(once, "read")

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def _attempts(
        self, once: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], what: str
    ) -> T:
        pool = self._require()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with pool.connection() as conn:
                    return await once(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                if not retriable(exc) or attempt == ATTEMPTS:
                    raise StoreError(f"{what} failed on {self.shown}: {_one_line(exc)}") from exc
                log.warning(
                    "store.retry",
                    store=self.shown,
                    what=what,
                    attempt=attempt,
                    error=type(exc).__name__,
                    sqlstate=getattr(exc, "sqlstate", None),
                )
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1])
        raise StoreError(f"{what} failed on {self.shown}")  # pragma: no cover (loop returns)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
