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
    ANSWERED,
    LOCAL,
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    JobState,
    Outcome,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.store import rules, sqlite_prune
from batchd.store.base import (
    ChunkPlan,
    DeliveryState,
    DuplicateContent,
    EventSpec,
    NewSubmission,
    PruneCounts,
    StoreStats,
)
from batchd.store.migrate import load_migrations, migrate, user_version
from batchd.store.sqlite_db import Database, Tx
from batchd.store.sqlite_duplicates import SqliteDuplicates
from batchd.store.sqlite_leases import SqliteLeases, write_job
from batchd.store.sqlite_outbox import SqliteOutbox, insert_event
from batchd.store.sqlite_rows import (
    INSERT_JOB,
    INSERT_SUBMISSION,
    SELECT_JOBS,
    UPDATE_SUBMISSION,
    job_from_row,
    job_params,
    submission_from_row,
    submission_params,
)

log = structlog.get_logger(__name__)


def _in(values: Sequence[str]) -> str:
    return f"({', '.join('?' * len(values))})"


_OPEN_SUBS = sorted(SUBMISSION_OPEN)
_ANSWERED = sorted(ANSWERED)
_FIND_DUPLICATE = (
    "SELECT * FROM submissions WHERE route = ? AND sha256 = ? "  # noqa: S608
    f"AND (state = ? OR (state = ? AND outcome IN {_in(_ANSWERED)})) "
    "ORDER BY created_at DESC, seq DESC LIMIT ?"
)


def _duplicate_params(route: str, sha256: str) -> tuple[object, ...]:
    return (route, sha256, SubmissionState.ACTIVE, SubmissionState.DONE, *_ANSWERED, 1)


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
_NEWEST_FIRST = " ORDER BY created_at DESC, seq DESC LIMIT ?"
_BEFORE_SUBMISSION = "(created_at, seq) < (SELECT created_at, seq FROM submissions WHERE id = ?)"
_CANCEL_JOBS = (
    f"UPDATE jobs SET cancel_requested = 1, updated_at = ? "  # noqa: S608
    f"WHERE submission_id = ? AND cancel_requested = 0 AND state NOT IN {_in(_TERMINAL)}"
)


class SqliteJobStore(SqliteOutbox, SqliteDuplicates, SqliteLeases):
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

    async def stats(self) -> StoreStats:
        row = await self._db.fetch_one(_STATS, _STATS_PARAMS)
        assert row is not None
        return StoreStats(*(int(v) for v in row))

    # ------------------------------------------------------------------ helpers
    # Transaction bodies run on the writer thread (``Database.write``): plain functions.
    @staticmethod
    def _submission(tx: Tx, submission_id: str) -> Submission:
        row = tx.row("SELECT * FROM submissions WHERE id = ?", (submission_id,))
        if row is None:
            raise StoreError(f"submission {submission_id} not found")
        return submission_from_row(row)

    @staticmethod
    def _jobs_of(tx: Tx, submission_id: str) -> list[Job]:
        rows = tx.rows(
            SELECT_JOBS + " WHERE submission_id = ? ORDER BY chunk_index", (submission_id,)
        )
        return [job_from_row(r) for r in rows]

    @staticmethod
    def _put_submission(tx: Tx, sub: Submission, event: EventSpec | None, now: float) -> None:
        new_event = rules.build_event(event, now=now, submission_id=sub.id) if event else None
        tx.run(UPDATE_SUBMISSION, submission_params(sub))
        insert_event(tx, new_event)

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        sub = rules.new_submission(new, now=now)
        await self._db.write(lambda tx: tx.run(INSERT_SUBMISSION, submission_params(sub, new)))
        return sub

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        def body(tx: Tx) -> Submission:
            sub = rules.claimed(self._submission(tx, submission_id))
            self._put_submission(tx, sub, None, now)
            return sub

        return await self._db.write(body)

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        def body(tx: Tx) -> None:
            sub, event = rules.abandoned(self._submission(tx, submission_id), reason, now=now)
            self._put_submission(tx, sub, event, now)

        await self._db.write(body)

    async def accept_submission(
        self,
        submission_id: str,
        *,
        sha256: str,
        line_count: int,
        results_dir: str,
        chunks: Sequence[ChunkPlan],
        now: float,
        event: EventSpec,
        unique: bool = False,
    ) -> list[Job]:
        def body(tx: Tx) -> list[Job]:
            current = self._submission(tx, submission_id)
            if unique:  # inside BEGIN IMMEDIATE: no other writer can accept it meanwhile
                rows = tx.rows(_FIND_DUPLICATE, _duplicate_params(current.route, sha256))
                if rows and rows[0]["id"] != submission_id:
                    raise DuplicateContent(submission_from_row(rows[0]))
            sub = rules.accepted(
                current,
                sha256=sha256,
                line_count=line_count,
                results_dir=results_dir,
                chunks=len(chunks),
                now=now,
            )
            jobs = rules.new_jobs(sub, chunks, now=now)
            self._put_submission(tx, sub, event, now)
            tx.many(INSERT_JOB, [job_params(j) for j in jobs])
            return jobs

        return await self._db.write(body)

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        def body(tx: Tx) -> None:
            sub = rules.rejected(self._submission(tx, submission_id), reason, now=now)
            self._put_submission(tx, sub, event, now)

        await self._db.write(body)

    async def finish_submission(
        self,
        submission_id: str,
        outcome: Outcome,
        *,
        now: float,
        event: EventSpec,
        results: ResultCounts | None = None,
        results_dir: str | None = None,
    ) -> Submission:
        def body(tx: Tx) -> Submission:
            current = self._submission(tx, submission_id)
            jobs = self._jobs_of(tx, submission_id)
            sub = rules.finished(
                current, outcome, jobs, now=now, results=results, results_dir=results_dir
            )
            self._put_submission(tx, sub, event, now)
            return sub

        return await self._db.write(body)

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        def body(tx: Tx) -> Submission:
            sub = rules.results_moved(self._submission(tx, submission_id), results_dir)
            self._put_submission(tx, sub, None, 0.0)
            return sub

        return await self._db.write(body)

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        def body(tx: Tx) -> Submission:
            current = self._submission(tx, submission_id)
            sub = rules.cancel_requested(current, now=now)
            if sub is None:
                return current
            self._put_submission(tx, sub, event, now)
            tx.run(_CANCEL_JOBS, (now, sub.id, *_TERMINAL))
            return sub

        return await self._db.write(body)

    async def get_submission(self, submission_id: str) -> Submission | None:
        row = await self._db.fetch_one("SELECT * FROM submissions WHERE id = ?", (submission_id,))
        return None if row is None else submission_from_row(row)

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        where, params = ["1"], []
        if after is not None:
            where.append(_BEFORE_SUBMISSION)
            params.append(after)
        if states is not None:
            where.append(f"state IN {_in(states)}")
            params += [str(s) for s in states]
        if route is not None:
            where.append("route = ?")
            params.append(route)
        sql = f"SELECT * FROM submissions WHERE {' AND '.join(where)}{_NEWEST_FIRST}"  # noqa: S608
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [submission_from_row(r) for r in rows]

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        row = await self._db.fetch_one(_FIND_DUPLICATE, _duplicate_params(route, sha256))
        return None if row is None else submission_from_row(row)

    async def results_dir_taken(self, results_dir: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM submissions WHERE results_dir = ? AND state = ? LIMIT 1",
            (results_dir, SubmissionState.ACTIVE),
        )
        return row is not None

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
