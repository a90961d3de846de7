"""The duplicate-job verbs of ``SqliteJobStore`` (table ``duplicate_jobs``, migration 0003)."""

from __future__ import annotations

import dataclasses
from typing import Any

from batchd.models import JobState
from batchd.store import rules
from batchd.store.base import DuplicateJob, EventSpec
from batchd.store.sqlite_db import Database, Tx
from batchd.store.sqlite_outbox import insert_event
from batchd.store.sqlite_rows import _insert, _select

_COLUMNS = tuple(f.name for f in dataclasses.fields(DuplicateJob))
_INSERT = _insert("duplicate_jobs", _COLUMNS).replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_SELECT = _select("duplicate_jobs", _COLUMNS)


def _params(dup: DuplicateJob) -> dict[str, Any]:
    params = dataclasses.asdict(dup)
    params["state"] = dup.state.value
    params["cancelled"] = int(dup.cancelled)
    return params


def _from_row(row: Any) -> DuplicateJob:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["state"] = JobState(values["state"])
    values["cancelled"] = bool(values["cancelled"])
    return DuplicateJob(**values)


class SqliteDuplicates:
    """Mixed into ``SqliteJobStore``."""

    _db: Database

    async def record_duplicate(self, dup: DuplicateJob, *, event: EventSpec) -> bool:
        new = rules.build_event(
            event, now=dup.found_at, submission_id=dup.submission_id, job_id=dup.job_id
        )

        def body(tx: Tx) -> bool:
            if not tx.run(_INSERT, _params(dup)):
                return False
            insert_event(tx, new)
            return True

        return await self._db.write(body)

    async def duplicates(self, *, submission_id: str | None = None) -> list[DuplicateJob]:
        if submission_id is None:
            rows = await self._db.fetch(_SELECT + " ORDER BY found_at, provider_job_id")
        else:
            rows = await self._db.fetch(
                _SELECT + " WHERE submission_id = ? ORDER BY found_at, provider_job_id",
                (submission_id,),
            )
        return [_from_row(r) for r in rows]
