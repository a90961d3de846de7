"""The claim verbs on submissions and named tasks of ``PostgresJobStore``, and its deployment
id (migration 0002). Each reads the row ``FOR UPDATE``, decides with ``store/leases.py`` and
writes where the version is still the one read; a task lease never taken has no row, and two
instances taking it at once meet on the primary key (``ON CONFLICT DO NOTHING``: the loser
changes nothing and reads that it lost).
"""

from __future__ import annotations

from collections.abc import Callable

from batchd.models import Submission
from batchd.store import leases
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_rows import submission_from_row

_CLAIM_SUBMISSION = (
    "UPDATE submissions SET owner = %s, lease_until = %s, version = %s "
    "WHERE id = %s AND version = %s"
)
_GET_TASK = "SELECT name, owner, lease_until, version FROM task_leases WHERE name = %s FOR UPDATE"
_INSERT_TASK = (
    "INSERT INTO task_leases (name, owner, lease_until, version) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (name) DO NOTHING"
)
_UPDATE_TASK = (
    "UPDATE task_leases SET owner = %s, lease_until = %s, version = %s "
    "WHERE name = %s AND version = %s"
)


class PostgresTasks:
    """Mixed into ``PostgresJobStore``."""

    _db: Database

    async def deployment_id(self, proposed: str, *, now: float) -> str:
        async def body(tx: Tx) -> str:
            await tx.run(
                "INSERT INTO deployment (only_row, id, created_at) VALUES (1, %s, %s) "
                "ON CONFLICT (only_row) DO NOTHING",
                (proposed, now),
            )
            row = await tx.row("SELECT id FROM deployment WHERE only_row = 1")
            assert row is not None
            return str(row["id"])

        return await self._db.write(body)

    async def claim_submission(
        self, submission_id: str, owner: str, lease_s: float, *, now: float
    ) -> Submission | None:
        async def body(tx: Tx) -> Submission | None:
            row = await tx.row(
                "SELECT * FROM submissions WHERE id = %s FOR UPDATE", (submission_id,)
            )
            if row is None:
                return None
            sub = submission_from_row(row)
            held = leases.claim_submission(sub, owner, now, lease_s)
            if held is None or held is sub:
                return held
            values = (owner, held.lease_until, held.version, sub.id, sub.version)
            return held if await tx.run(_CLAIM_SUBMISSION, values) == 1 else None

        return await self._db.write(body)

    async def claim_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        def decide(lease: leases.TaskLease | None) -> leases.TaskLease | None:
            return leases.claim_task(lease, name, owner, now, lease_s)

        return await self._db.write(lambda tx: _write_task(tx, name, decide))

    async def renew_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        def decide(lease: leases.TaskLease | None) -> leases.TaskLease | None:
            return leases.renew_task(lease, owner, now, lease_s)

        return await self._db.write(lambda tx: _write_task(tx, name, decide))

    async def release_task(self, name: str, owner: str) -> bool:
        def decide(lease: leases.TaskLease | None) -> leases.TaskLease | None:
            return leases.release_task(lease, owner)

        return await self._db.write(lambda tx: _write_task(tx, name, decide))


async def _write_task(
    tx: Tx, name: str, decide: Callable[[leases.TaskLease | None], leases.TaskLease | None]
) -> bool:
    """Read the lease ``name`` (locked), decide, and write the decision where the version is
    still the one read (an insert when there was no row). True when the decision holds."""
    row = await tx.row(_GET_TASK, (name,))
    current = None if row is None else leases.TaskLease(**row)
    new = decide(current)
    if new is None:
        return False
    if new is current:
        return True
    values = (new.owner, new.lease_until, new.version)
    if current is None:
        return await tx.run(_INSERT_TASK, (new.name, *values)) == 1
    return await tx.run(_UPDATE_TASK, (*values, name, current.version)) == 1
