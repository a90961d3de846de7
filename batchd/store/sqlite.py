"""``SqliteJobStore``: the ``JobStore`` on one SQLite file, through aiosqlite.

Durability (see ``reference/reliability.md`` §2): WAL, ``synchronous=FULL``, ``busy_timeout``
5 s, foreign keys on, read back at ``open()`` (``StoreError`` when they did not take). One
writer connection behind one ``asyncio.Lock``, every write verb one ``BEGIN IMMEDIATE``
transaction; reads on a second, read-only connection that only ever sees committed data (the
reasoning is in ``sqlite_db.py``). Schema migrations by ``PRAGMA user_version``
(``migrate.py``, ``migrations/*.sql``). Decisions come from ``rules.py``, shared with
``MemoryJobStore``; SQL stays in the ``sqlite*`` modules and ``migrations/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from batchd.clock import Clock, SystemClock
from batchd.errors import SchemaMismatch, StoreError
from batchd.models import (
    ACTIVE,
    LOCAL,
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    JobState,
    ResultState,
)
from batchd.store import rules, sqlite_prune
from batchd.store.base import (
    DeliveryState,
    EventSpec,
    PruneCounts,
    StoreStats,
)
from batchd.store.migrate import load_migrations, migrate, user_version
from batchd.store.sqlite_db import Database, Tx
from batchd.store.sqlite_duplicates import SqliteDuplicates
from batchd.store.sqlite_leases import SqliteLeases, write_job
from batchd.store.sqlite_outbox import SqliteOutbox, insert_event
from batchd.store.sqlite_rows import (
    SELECT_JOBS,
    job_from_row,
)
from batchd.store.sqlite_submissions import SqliteSubmissions

log = structlog.get_logger(__name__)


def _in(values: Sequence[str]) -> str:
    return f"({', '.join('?' * len(values))})"


_OPEN_SUBS = sorted(SUBMISSION_OPEN)
_OPEN_JOBS = sorted(LOCAL | ACTIVE)
_TERMINAL = sorted(TERMINAL)
_STATS = (
    f"SELECT (SELECT count(*) FROM submissions WHERE state IN {_in(_OPEN_SUBS)}), "  # noqa: S608
    f"(SELECT count(*) FROM jobs WHERE state IN {_in(_OPEN_JOBS)}), "
    "(SELECT count(*) FROM jobs WHERE result_state = ?), "
    "(SELECT count(*) FROM events WHERE fanned_out_at IS NULL) "
    "+ (SELECT count(*) FROM deliveries WHERE state = ?)"
)
_STATS_PARAMS = (*_OPEN_SUBS, *_OPEN_JOBS, ResultState.PENDING, DeliveryState.PENDING)


class SqliteJobStore(SqliteSubmissions, SqliteOutbox, SqliteDuplicates, SqliteLeases):
    """A ``JobStore`` on the SQLite file at ``path``.

    ``on_migration(version)`` is called before each schema migration ``open()`` applies (the
    daemon logs it). ``migrate=False`` (every command but the daemon) opens without migrating
    and refuses another schema version. ``clock`` stamps ``schema_history``."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        on_migration: Callable[[int], None] | None = None,
        migrate: bool = True,
    ) -> None:
        self._db = Database(Path(path))
        self._clock = clock or SystemClock()
        self._on_migration = on_migration
        self._migrate = migrate

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._db.is_open:
            return
        if not self._migrate and not self._db.path.exists():
            raise StoreError(f"no batchd database at {self._db.path} (has `batchd run` started?)")
        await self._db.open_writer()
        try:
            version = await self._schema()
            await self._db.open_reader()
        except BaseException:
            await self._db.close()
            raise
        log.debug("store.opened", path=str(self._db.path), schema_version=version)

    async def _schema(self) -> int:
        """Migrate (the daemon), or check that no migration is due (every other command: only
        the daemon migrates, so that a command run after an upgrade never changes the schema
        under the daemon still running the old code)."""
        migrations = load_migrations()
        if self._migrate:
            return await migrate(
                self._db, migrations, now=self._clock.now(), on_migration=self._on_migration
            )
        found = await user_version(self._db)
        if found != len(migrations):
            raise SchemaMismatch(self._db.path, found, len(migrations))
        return found

    async def close(self) -> None:
        await self._db.close()

    async def pragmas(self) -> dict[str, object]:
        """The durability settings in force on the writer connection (for checks and tests)."""
        return await self._db.pragmas()

    async def schema_version(self) -> int:
        return await user_version(self._db)

    async def integrity_check(self) -> list[str]:
        rows = await self._db.fetch("PRAGMA integrity_check")
        problems = [str(r[0]) for r in rows if r[0] != "ok"]
        dangling = await self._db.fetch("PRAGMA foreign_key_check")
        return problems + [
            f"foreign key: {r[0]} row {r[1]} references a missing {r[2]}" for r in dangling
        ]

    async def deployment_id(self, proposed: str, *, now: float) -> str:
        def body(tx: Tx) -> str:
            tx.run(
                "INSERT INTO deployment (only_row, id, created_at) VALUES (1, ?, ?) "
                "ON CONFLICT (only_row) DO NOTHING",
                (proposed, now),
            )
            row = tx.row("SELECT id FROM deployment WHERE only_row = 1")
            assert row is not None
            return str(row[0])

        return await self._db.write(body)

    async def stats(self) -> StoreStats:
        row = await self._db.fetch_one(_STATS, _STATS_PARAMS)
        assert row is not None
        return StoreStats(*(int(v) for v in row))

    # ------------------------------------------------------------------ jobs
    async def get_job(self, job_id: str) -> Job | None:
        row = await self._db.fetch_one(SELECT_JOBS + " WHERE id = ?", (job_id,))
        return None if row is None else job_from_row(row)

    async def find_job(self, any_id: str) -> Job | None:
        row = await self._db.fetch_one(
            SELECT_JOBS + " WHERE id = :id OR provider_job_id = :id "
            "ORDER BY id = :id DESC, id LIMIT 1",
            {"id": any_id},
        )
        return None if row is None else job_from_row(row)

    async def jobs_for_submission(self, submission_id: str) -> list[Job]:
        rows = await self._db.fetch(
            SELECT_JOBS + " WHERE submission_id = ? ORDER BY chunk_index", (submission_id,)
        )
        return [job_from_row(r) for r in rows]

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] | None = None,
        provider: str | None = None,
        due_before: float | None = None,
        cancel_requested: bool | None = None,
        result_pending: bool = False,
        limit: int = 100_000,
    ) -> list[Job]:
        sql, params = _jobs_query(states, provider, due_before, cancel_requested, result_pending)
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [job_from_row(r) for r in rows]

    async def transition_job(
        self,
        job_id: str,
        expected: JobState,
        new: JobState,
        *,
        now: float,
        event: EventSpec | None = None,
        owner: str | None = None,
        **fields: Any,
    ) -> Job:
        def body(tx: Tx) -> Job:
            row = tx.row(SELECT_JOBS + " WHERE id = ?", (job_id,))
            if row is None:
                raise StoreError(f"job {job_id} not found")
            job = job_from_row(row)
            changed = rules.transitioned(job, expected, new, now=now, fields=fields, owner=owner)
            ids = {"submission_id": job.submission_id, "job_id": job.id}
            write_job(tx, job, changed)
            insert_event(tx, rules.build_event(event, now=now, **ids) if event else None)
            return changed

        return await self._db.write(body)

    # ------------------------------------------------------------------ housekeeping
    async def prune(
        self, *, events_before: float | None, rows_before: float | None, apply: bool
    ) -> PruneCounts:
        return await self._db.write(
            lambda tx: sqlite_prune.prune(
                tx, events_before=events_before, rows_before=rows_before, apply=apply
            )
        )

    async def compact(self, *, full: bool = False) -> int:
        return await self._db.vacuum(full=full)


def _jobs_query(
    states: Sequence[JobState] | None,
    provider: str | None,
    due_before: float | None,
    cancel_requested: bool | None,
    result_pending: bool,
) -> tuple[str, list[object]]:
    """``list_jobs`` as SQL: only fixed fragments and placeholders, for the indexes on
    ``(state, next_attempt_at)`` and ``(result_state, next_attempt_at)``."""
    where: list[str] = ["1"]
    params: list[object] = []
    if states is not None:
        values = sorted({rules.job_state(s).value for s in states})
        where.append(f"state IN {_in(values)}")
        params += values
    if result_pending:
        where.append(f"result_state = ? AND state IN {_in(_TERMINAL)}")
        params += [ResultState.PENDING.value, *_TERMINAL]
    if provider is not None:
        where.append("provider = ?")
        params.append(provider)
    if due_before is not None:
        where.append("next_attempt_at <= ?")
        params.append(due_before)
    if cancel_requested is not None:  # a literal: the partial index jobs_cancel_wanted
        where.append("cancel_requested = 1" if cancel_requested else "cancel_requested = 0")
    sql = f"{SELECT_JOBS} WHERE {' AND '.join(where)} ORDER BY next_attempt_at, id LIMIT ?"
    return sql, params
