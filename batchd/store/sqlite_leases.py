"""The claim verbs of ``SqliteJobStore``: jobs (columns ``owner``, ``lease_until``,
``version``, migration 0004), submissions and named tasks (migration 0005: the same columns on
``submissions``, the ``task_leases`` table). The rules are ``store/leases.py``'s.

Each runs in one ``BEGIN IMMEDIATE`` transaction, and every row it changes is written with
``WHERE version = <the version read>``: the same conditional update another engine (one
without a database-wide write lock) would need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from batchd.errors import StaleState
from batchd.models import Job, ResultState, Submission
from batchd.store import leases
from batchd.store.leases import Stage
from batchd.store.sqlite_db import Database, Tx
from batchd.store.sqlite_rows import (
    SELECT_JOBS,
    UPDATE_JOB_AT_VERSION,
    job_from_row,
    job_params,
    submission_from_row,
)

_CLAIM = "UPDATE jobs SET owner = ?, lease_until = ?, version = ? WHERE id = ? AND version = ?"
_FREE = "(owner IS NULL OR owner = ? OR lease_until IS NULL OR lease_until <= ?)"


def _claim_query(
    stage: Stage, owner: str, now: float, *, provider: str | None, limit: int, due_only: bool
) -> tuple[str, list[object]]:
    states = sorted(s.value for s in leases.STAGE_STATES[stage])
    where = [f"state IN ({', '.join('?' * len(states))})", _FREE]
    params: list[object] = [*states, owner, now]
    if due_only:
        where.append("next_attempt_at <= ?")
        params.append(now)
    if stage == "collect":
        where.append("result_state = ?")
        params.append(ResultState.PENDING.value)
    if provider is not None:
        where.append("provider = ?")
        params.append(provider)
    sql = f"{SELECT_JOBS} WHERE {' AND '.join(where)} ORDER BY next_attempt_at, id LIMIT ?"
    return sql, [*params, max(0, limit)]


def write_job(tx: Tx, read: Job, changed: Job) -> None:
    """``changed`` written where the row is still at ``read``'s version."""
    params = job_params(changed)
    params["read_version"] = read.version
    if tx.run(UPDATE_JOB_AT_VERSION, params) != 1:
        raise StaleState(f"job {read.id}", f"version {read.version}", "a newer version")


class SqliteLeases:
    """Mixed into ``SqliteJobStore``."""

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

        def body(tx: Tx) -> list[Job]:
            taken = []
            for row in tx.rows(sql, params):
                job = job_from_row(row)
                if not leases.claimable(job, stage, owner, now, provider, due_only=due_only):
                    continue
                if not leases.renewal_due(job, owner, now, lease_s):
                    taken.append(job)
                    continue
                new = leases.claimed(job, owner, now + lease_s)
                values = (owner, new.lease_until, new.version, job.id, job.version)
                if tx.run(_CLAIM, values) == 1:
                    taken.append(new)
            return taken

        return await self._db.write(body)

    async def reschedule_jobs(self, job_ids: Sequence[str], next_attempt_at: float) -> int:
        rows = [(float(next_attempt_at), i) for i in dict.fromkeys(job_ids)]
        return await self._db.write(
            lambda tx: tx.many(
                "UPDATE jobs SET next_attempt_at = ?, version = version + 1 WHERE id = ?", rows
            )
        )

    # ------------------------------------------------------------------ submissions, tasks
    async def claim_submission(
        self, submission_id: str, owner: str, lease_s: float, *, now: float
    ) -> Submission | None:
        def body(tx: Tx) -> Submission | None:
            row = tx.row("SELECT * FROM submissions WHERE id = ?", (submission_id,))
            if row is None:
                return None
            sub = submission_from_row(row)
            held = leases.claim_submission(sub, owner, now, lease_s)
            if held is None or held is sub:
                return held
            values = (owner, held.lease_until, held.version, sub.id, sub.version)
            return held if tx.run(_CLAIM_SUBMISSION, values) == 1 else None

        return await self._db.write(body)

    async def claim_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        return await self._db.write(
            lambda tx: _write_task(
                tx, name, lambda t: leases.claim_task(t, name, owner, now, lease_s)
            )
        )

    async def renew_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        return await self._db.write(
            lambda tx: _write_task(tx, name, lambda t: leases.renew_task(t, owner, now, lease_s))
        )

    async def release_task(self, name: str, owner: str) -> bool:
        return await self._db.write(
            lambda tx: _write_task(tx, name, lambda t: leases.release_task(t, owner))
        )


_CLAIM_SUBMISSION = (
    "UPDATE submissions SET owner = ?, lease_until = ?, version = ? WHERE id = ? AND version = ?"
)
_GET_TASK = "SELECT name, owner, lease_until, version FROM task_leases WHERE name = ?"
_PUT_TASK = (
    "INSERT INTO task_leases (name, owner, lease_until, version) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
    "lease_until = excluded.lease_until, version = excluded.version "
    "WHERE task_leases.version = ?"
)


def _write_task(
    tx: Tx, name: str, decide: Callable[[leases.TaskLease | None], leases.TaskLease | None]
) -> bool:
    """Read the lease ``name``, decide, and write the decision where the version is still the
    one read (an insert when there was no row). True when the decision holds."""
    row = tx.row(
        "SELECT name, owner, lease_until, version FROM task_leases WHERE name = ?", (name,)
    )
    current = None if row is None else leases.TaskLease(*row)
    new = decide(current)
    if new is None:
        return False
    if new is current:
        return True
    read = -1 if current is None else current.version
    return tx.run(_PUT_TASK, (new.name, new.owner, new.lease_until, new.version, read)) == 1
