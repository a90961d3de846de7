"""``PostgresJobStore``: the ``JobStore`` on a PostgreSQL database, shared by many instances.

Every write verb is one transaction (``postgres_db.Database.write``: retried whole after a
lost connection, a statement timeout or a serialization failure). What a verb compares, it
locks first: the submission row ``FOR UPDATE``, a job written ``WHERE version = <read>``, the
duplicate check of ``accept_submission(unique=True)`` under a transaction advisory lock on its
route and content, and ``claim_due`` takes its jobs ``FOR UPDATE SKIP LOCKED`` so that two
instances claiming at once take disjoint sets without waiting on each other. Decisions come
from ``rules.py`` (shared with the SQLite and memory stores); the schema and its versions are
``postgres_migrate.py`` and ``migrations_pg/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog

from batchd.clock import Clock, SystemClock
from batchd.errors import StoreError
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
from batchd.store import postgres_migrate, rules
from batchd.store.base import (
    ChunkPlan,
    DeliveryState,
    DuplicateContent,
    EventSpec,
    NewSubmission,
    StoreStats,
)
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_leases import PostgresLeases, write_job
from batchd.store.postgres_live import Live, notify
from batchd.store.postgres_outbox import PostgresOutbox, insert_event
from batchd.store.postgres_rows import (
    INSERT_JOB,
    INSERT_SUBMISSION,
    SELECT_JOBS,
    UPDATE_SUBMISSION,
    job_from_row,
    job_params,
    jobs_query,
    submission_from_row,
    submission_params,
)
from batchd.store.wakeups import Topic

log = structlog.get_logger(__name__)

_OPEN_SUBS = sorted(SUBMISSION_OPEN)
_ANSWERED = sorted(ANSWERED)
_FIND_DUPLICATE = (
    "SELECT * FROM submissions WHERE route = %s AND sha256 = %s "
    "AND (state = %s OR (state = %s AND outcome = ANY(%s))) "
    "ORDER BY created_at DESC, seq DESC LIMIT 1"
)
# Two accepts of the same content on one route queue here (a transaction advisory lock).
_CONTENT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _duplicate_params(route: str, sha256: str) -> tuple[object, ...]:
    return (route, sha256, SubmissionState.ACTIVE, SubmissionState.DONE, _ANSWERED)


_OPEN_JOBS, _TERMINAL = sorted(LOCAL | ACTIVE), sorted(TERMINAL)
_STATS = (
    "SELECT (SELECT count(*) FROM submissions WHERE state = ANY(%s)), "
    "(SELECT count(*) FROM jobs WHERE state = ANY(%s)), "
    "(SELECT count(*) FROM jobs WHERE result_state = %s), "
    "(SELECT count(*) FROM events WHERE fanned_out_at IS NULL) "
    "+ (SELECT count(*) FROM deliveries WHERE state = %s)"
)
_STATS_PARAMS = (_OPEN_SUBS, _OPEN_JOBS, ResultState.PENDING.value, DeliveryState.PENDING)
_NEWEST_FIRST = " ORDER BY created_at DESC, seq DESC LIMIT %s"
_BEFORE_SUBMISSION = "(created_at, seq) < (SELECT created_at, seq FROM submissions WHERE id = %s)"
_CANCEL_JOBS = (
    "UPDATE jobs SET cancel_requested = 1, updated_at = %s "
    "WHERE submission_id = %s AND cancel_requested = 0 AND NOT (state = ANY(%s))"
)


class PostgresJobStore(PostgresOutbox, PostgresLeases):
    """A ``JobStore`` on the PostgreSQL database ``db`` (``postgres_url`` builds it).

    ``migrate=False`` (every command but the daemon) opens without migrating and refuses
    another schema version; ``on_migration(version)`` is called before each migration."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock | None = None,
        on_migration: Callable[[int], None] | None = None,
        migrate: bool = True,
    ) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._on_migration = on_migration
        self._migrate = migrate
        self._live = Live(db, self._clock)

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._db.is_open:
            return
        await self._db.open()
        try:
            if self._migrate:
                version = await postgres_migrate.migrate(
                    self._db, now=self._clock.now(), on_migration=self._on_migration
                )
            else:
                version = await postgres_migrate.check_version(self._db)
        except BaseException:
            await self._db.close()
            raise
        log.debug("store.opened", store=self._db.shown, schema_version=version)

    async def close(self) -> None:
        await self._live.close()
        await self._db.close()

    def on_wakeup(self, topic: Topic, wake: Callable[[], None]) -> None:
        self._live.on_wakeup(topic, wake)

    def keep_alive(self, owner: str, lease_s: float) -> None:
        self._live.keep_alive(owner, lease_s)

    @property
    def database(self) -> Database:
        """The connections (for ``postgres_copy`` and the tests; the loops use the verbs)."""
        return self._db

    async def schema_version(self) -> int:
        return await postgres_migrate.schema_version(self._db)

    async def server_time(self) -> float:
        """The server's clock (epoch seconds): ``batchd check`` reports the hosts' skew."""
        row = await self._db.fetch_one("SELECT extract(epoch FROM clock_timestamp()) AS t")
        assert row is not None
        return float(row["t"])

    async def integrity_check(self) -> list[str]:
        # Foreign keys and checks hold on every write; left: chunk indexes within range.
        rows = await self._db.fetch(
            "SELECT j.id FROM jobs j JOIN submissions s ON s.id = j.submission_id "
            "WHERE j.chunk_index < 0 OR (s.chunk_count > 0 AND j.chunk_index >= s.chunk_count) "
            "ORDER BY j.id LIMIT 100"
        )
        return [f"job {r['id']}: chunk index outside its submission's chunks" for r in rows]

    async def stats(self) -> StoreStats:
        rows = await self._db.fetch_tuples(_STATS, _STATS_PARAMS)
        return StoreStats(*(int(v) for v in rows[0]))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    async def _submission(tx: Tx, submission_id: str) -> Submission:
        row = await tx.row("SELECT * FROM submissions WHERE id = %s FOR UPDATE", (submission_id,))
        if row is None:
            raise StoreError(f"submission {submission_id} not found")
        return submission_from_row(row)

    @staticmethod
    async def _jobs_of(tx: Tx, submission_id: str) -> list[Job]:
        rows = await tx.tuples(
            SELECT_JOBS + " WHERE submission_id = %s ORDER BY chunk_index", (submission_id,)
        )
        return [job_from_row(r) for r in rows]

    @staticmethod
    async def _put_submission(tx: Tx, sub: Submission, event: EventSpec | None, now: float) -> None:
        new_event = rules.build_event(event, now=now, submission_id=sub.id) if event else None
        await tx.run(UPDATE_SUBMISSION, submission_params(sub))
        await insert_event(tx, new_event)

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        sub = rules.new_submission(new, now=now)

        async def body(tx: Tx) -> None:
            await tx.run(INSERT_SUBMISSION, submission_params(sub, new))

        await self._db.write(body)
        return sub

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        async def body(tx: Tx) -> Submission:
            sub = rules.claimed(await self._submission(tx, submission_id))
            await self._put_submission(tx, sub, None, now)
            return sub

        return await self._db.write(body)

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        async def body(tx: Tx) -> None:
            current = await self._submission(tx, submission_id)
            sub, event = rules.abandoned(current, reason, now=now)
            await self._put_submission(tx, sub, event, now)

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
        async def body(tx: Tx) -> list[Job]:
            current = await self._submission(tx, submission_id)
            if unique:  # under the content's lock: no other accept of it can run meanwhile
                await tx.run(_CONTENT_LOCK, (f"batchd.content.{current.route}.{sha256}",))
                rows = await tx.rows(_FIND_DUPLICATE, _duplicate_params(current.route, sha256))
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
            await self._put_submission(tx, sub, event, now)
            await tx.many(INSERT_JOB, [job_params(j) for j in jobs])
            await notify(tx, "submit")
            return jobs

        return await self._db.write(body)

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        async def body(tx: Tx) -> None:
            sub = rules.rejected(await self._submission(tx, submission_id), reason, now=now)
            await self._put_submission(tx, sub, event, now)

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
        async def body(tx: Tx) -> Submission:
            current = await self._submission(tx, submission_id)
            jobs = await self._jobs_of(tx, submission_id)
            sub = rules.finished(
                current, outcome, jobs, now=now, results=results, results_dir=results_dir
            )
            await self._put_submission(tx, sub, event, now)
            return sub

        return await self._db.write(body)

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        async def body(tx: Tx) -> Submission:
            sub = rules.results_moved(await self._submission(tx, submission_id), results_dir)
            await self._put_submission(tx, sub, None, 0.0)
            return sub

        return await self._db.write(body)

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        async def body(tx: Tx) -> Submission:
            current = await self._submission(tx, submission_id)
            sub = rules.cancel_requested(current, now=now)
            if sub is None:
                return current
            await self._put_submission(tx, sub, event, now)
            await tx.run(_CANCEL_JOBS, (now, sub.id, _TERMINAL))
            return sub

        return await self._db.write(body)

    async def get_submission(self, submission_id: str) -> Submission | None:
        row = await self._db.fetch_one("SELECT * FROM submissions WHERE id = %s", (submission_id,))
        return None if row is None else submission_from_row(row)

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if after is not None:
            where.append(_BEFORE_SUBMISSION)
            params.append(after)
        if states is not None:
            where.append("state = ANY(%s)")
            params.append([str(s) for s in states])
        if route is not None:
            where.append("route = %s")
            params.append(route)
        sql = f"SELECT * FROM submissions WHERE {' AND '.join(where)}{_NEWEST_FIRST}"  # noqa: S608
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [submission_from_row(r) for r in rows]

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        row = await self._db.fetch_one(_FIND_DUPLICATE, _duplicate_params(route, sha256))
        return None if row is None else submission_from_row(row)

    async def results_dir_taken(self, results_dir: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 AS taken FROM submissions WHERE results_dir = %s AND state = %s LIMIT 1",
            (results_dir, SubmissionState.ACTIVE),
        )
        return row is not None

    # ------------------------------------------------------------------ jobs
    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._db.fetch_tuples(SELECT_JOBS + " WHERE id = %s", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def find_job(self, any_id: str) -> Job | None:
        rows = await self._db.fetch_tuples(
            SELECT_JOBS + " WHERE id = %(id)s OR provider_job_id = %(id)s "
            "ORDER BY id = %(id)s DESC, id LIMIT 1",
            {"id": any_id},
        )
        return job_from_row(rows[0]) if rows else None

    async def jobs_for_submission(self, submission_id: str) -> list[Job]:
        rows = await self._db.fetch_tuples(
            SELECT_JOBS + " WHERE submission_id = %s ORDER BY chunk_index", (submission_id,)
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
        sql, params = jobs_query(states, provider, due_before, cancel_requested, result_pending)
        rows = await self._db.fetch_tuples(sql, (*params, max(0, limit)))
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
        async def body(tx: Tx) -> Job:
            rows = await tx.tuples(SELECT_JOBS + " WHERE id = %s FOR UPDATE", (job_id,))
            if not rows:
                raise StoreError(f"job {job_id} not found")
            job = job_from_row(rows[0])
            changed = rules.transitioned(job, expected, new, now=now, fields=fields, owner=owner)
            ids = {"submission_id": job.submission_id, "job_id": job.id}
            await write_job(tx, job, changed)
            if changed.state is not job.state and changed.state in ACTIVE | TERMINAL:
                await notify(tx, "track" if changed.state in ACTIVE else "collect")
            await insert_event(tx, rules.build_event(event, now=now, **ids) if event else None)
            return changed

        return await self._db.write(body)
