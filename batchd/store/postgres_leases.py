"""The job-claim, duplicate and housekeeping verbs of ``PostgresJobStore``.

``claim_due`` reads the due jobs ``FOR UPDATE SKIP LOCKED``: two instances claiming at the same
moment each lock a disjoint set and neither waits for the other; a job another instance holds
(a live lease) is not even read. Every row it changes is written ``WHERE version = <read>``,
as ``transition_job`` does (``write_job``), so a change decided on a stale read never lands.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchd.errors import StaleState
from batchd.models import Job, ResultState
from batchd.store import leases, rules
from batchd.store.base import DeliveryState, DuplicateJob, EventSpec, PruneCounts
from batchd.store.leases import Stage
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_outbox import insert_event
from batchd.store.postgres_rows import (
    INSERT_DUPLICATE,
    SELECT_DUPLICATES,
    SELECT_JOBS,
    UPDATE_JOB_AT_VERSION,
    duplicate_from_row,
    duplicate_params,
    job_from_row,
    job_params,
)

_CLAIM = "UPDATE jobs SET owner = %s, lease_until = %s, version = %s WHERE id = %s AND version = %s"
_FREE = "(owner IS NULL OR owner = %s OR lease_until IS NULL OR lease_until <= %s)"


def _claim_query(
    stage: Stage, owner: str, now: float, *, provider: str | None, limit: int, due_only: bool
) -> tuple[str, list[object]]:
    states = sorted(s.value for s in leases.STAGE_STATES[stage])
    where = ["state = ANY(%s)", _FREE]
    params: list[object] = [states, owner, now]
    if due_only:
        where.append("next_attempt_at <= %s")
        params.append(now)
    if stage == "collect":
        where.append("result_state = %s")
        params.append(ResultState.PENDING.value)
    if provider is not None:
        where.append("provider = %s")
        params.append(provider)
    sql = (
        f"{SELECT_JOBS} WHERE {' AND '.join(where)} "
        "ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    return sql, [*params, max(0, limit)]


async def write_job(tx: Tx, read: Job, changed: Job) -> None:
    """``changed`` written where the row is still at ``read``'s version."""
    params = job_params(changed)
    params["read_version"] = read.version
    if await tx.run(UPDATE_JOB_AT_VERSION, params) != 1:
        raise StaleState(f"job {read.id}", f"version {read.version}", "a newer version")


class PostgresLeases:
    """Mixed into ``PostgresJobStore``."""

    _db: Database

    async def claim_due(
        self,
        stage: Stage,
        owner: str,
        lease_s: float,
        *,
        now: float,
        limit: int = 100,
        provider: str | None = None,
        due_only: bool = True,
    ) -> list[Job]:
        sql, params = _claim_query(
            stage, owner, now, provider=provider, limit=limit, due_only=due_only
        )

        async def body(tx: Tx) -> list[Job]:
            taken: list[Job] = []
            writes: list[tuple[object, ...]] = []
            for row in await tx.tuples(sql, params):
                job = job_from_row(row)
                if not leases.claimable(job, stage, owner, now, provider, due_only=due_only):
                    continue
                if not leases.renewal_due(job, owner, now, lease_s):
                    taken.append(job)
                    continue
                new = leases.claimed(job, owner, now + lease_s)
                writes.append((owner, new.lease_until, new.version, job.id, job.version))
                taken.append(new)
            await tx.many(_CLAIM, writes)  # the rows are locked: every write lands
            return taken

        return await self._db.write(body, what="claim")

    async def reschedule_jobs(self, job_ids: Sequence[str], next_attempt_at: float) -> int:
        ids = list(dict.fromkeys(job_ids))

        async def body(tx: Tx) -> int:
            return await tx.run(
                "UPDATE jobs SET next_attempt_at = %s, version = version + 1 WHERE id = ANY(%s)",
                (float(next_attempt_at), ids),
            )

        return await self._db.write(body)

    # ------------------------------------------------------------------ duplicates
    async def record_duplicate(self, dup: DuplicateJob, *, event: EventSpec) -> bool:
        new = rules.build_event(
            event, now=dup.found_at, submission_id=dup.submission_id, job_id=dup.job_id
        )

        async def body(tx: Tx) -> bool:
            if not await tx.run(INSERT_DUPLICATE, duplicate_params(dup)):
                return False
            await insert_event(tx, new)
            return True

        return await self._db.write(body)

    async def duplicates(self, *, submission_id: str | None = None) -> list[DuplicateJob]:
        if submission_id is None:
            rows = await self._db.fetch(SELECT_DUPLICATES + " ORDER BY found_at, provider_job_id")
        else:
            rows = await self._db.fetch(
                SELECT_DUPLICATES + " WHERE submission_id = %s ORDER BY found_at, provider_job_id",
                (submission_id,),
            )
        return [duplicate_from_row(r) for r in rows]

    # ------------------------------------------------------------------ housekeeping
    async def prune(
        self, *, events_before: float | None, rows_before: float | None, apply: bool
    ) -> PruneCounts:
        return await self._db.write(
            lambda tx: _prune(
                tx, events_before=events_before, rows_before=rows_before, apply=apply
            ),
            what="prune",
        )

    async def compact(self, *, full: bool = False) -> int:
        """PostgreSQL's autovacuum reuses the space of deleted rows; a ``full`` compaction is
        the database administrator's ``VACUUM FULL`` (it locks every table), not batchd's."""
        return 0


_FINISHED = sorted(rules.FINISHED)
_SETUP = (
    "CREATE TEMP TABLE prune_events (id text PRIMARY KEY) ON COMMIT DROP",
    "CREATE TEMP TABLE prune_subs (id text PRIMARY KEY) ON COMMIT DROP",
)
_EVENTS = (
    "INSERT INTO prune_events SELECT id FROM events WHERE created_at < %s "
    "AND fanned_out_at IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.state = %s)"
)
_SUBS = (
    "INSERT INTO prune_subs SELECT s.id FROM submissions s "
    "WHERE s.state = ANY(%s) AND coalesce(s.finished_at, s.created_at) < %s "
    "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.submission_id = s.id "
    "AND e.id NOT IN (SELECT id FROM prune_events)) "
    "AND NOT EXISTS (SELECT 1 FROM events e JOIN jobs j ON e.job_id = j.id "
    "WHERE j.submission_id = s.id AND e.id NOT IN (SELECT id FROM prune_events))"
)
_COUNTS = (
    "SELECT (SELECT count(*) FROM prune_subs) AS submissions, "
    "(SELECT count(*) FROM jobs WHERE submission_id IN (SELECT id FROM prune_subs)) AS jobs, "
    "(SELECT count(*) FROM prune_events) AS events, "
    "(SELECT count(*) FROM deliveries WHERE event_id IN (SELECT id FROM prune_events)) "
    "AS deliveries"
)
_DELETE = (
    "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM prune_events)",
    "DELETE FROM events WHERE id IN (SELECT id FROM prune_events)",
    "DELETE FROM duplicate_jobs WHERE submission_id IN (SELECT id FROM prune_subs)",
    "DELETE FROM jobs WHERE submission_id IN (SELECT id FROM prune_subs)",
    "DELETE FROM submissions WHERE id IN (SELECT id FROM prune_subs)",
)


async def _prune(
    tx: Tx, *, events_before: float | None, rows_before: float | None, apply: bool
) -> PruneCounts:
    for statement in _SETUP:
        await tx.run(statement)
    if events_before is not None:
        await tx.run(_EVENTS, (events_before, DeliveryState.PENDING))
    if rows_before is not None:
        await tx.run(_SUBS, (_FINISHED, rows_before))
    row = await tx.row(_COUNTS)
    assert row is not None
    counts = PruneCounts(**{k: int(v) for k, v in row.items()})
    if apply:
        for statement in _DELETE:
            await tx.run(statement)
    return counts
