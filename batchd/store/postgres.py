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
    LOCAL,
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    JobState,
    ResultState,
)
from batchd.store import postgres_migrate, rules
from batchd.store.base import (
    DeliveryState,
    EventSpec,
    StoreStats,
)
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_leases import PostgresLeases, write_job
from batchd.store.postgres_live import Live, notify
from batchd.store.postgres_outbox import PostgresOutbox, insert_event
from batchd.store.postgres_rows import (
    SELECT_JOBS,
    job_from_row,
    jobs_query,
)
from batchd.store.postgres_submissions import PostgresSubmissions
from batchd.store.postgres_tasks import PostgresTasks
from batchd.store.wakeups import Topic

log = structlog.get_logger(__name__)

_OPEN_SUBS = sorted(SUBMISSION_OPEN)
_OPEN_JOBS, _TERMINAL = sorted(LOCAL | ACTIVE), sorted(TERMINAL)
_STATS = (
    "SELECT (SELECT count(*) FROM submissions WHERE state = ANY(%s)), "
    "(SELECT count(*) FROM jobs WHERE state = ANY(%s)), "
    "(SELECT count(*) FROM jobs WHERE result_state = %s), "
    "(SELECT count(*) FROM events WHERE fanned_out_at IS NULL) "
    "+ (SELECT count(*) FROM deliveries WHERE state = %s)"
)
_STATS_PARAMS = (_OPEN_SUBS, _OPEN_JOBS, ResultState.PENDING.value, DeliveryState.PENDING)


class PostgresJobStore(PostgresSubmissions, PostgresTasks, PostgresOutbox, PostgresLeases):
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
