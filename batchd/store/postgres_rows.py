"""Rows of the PostgreSQL schema (``migrations_pg/``) to ``models`` values and back.

The columns, their names and their encodings (canonical JSON text, states as their values)
are the SQLite schema's, so the conversions are ``sqlite_rows``'s; only the placeholders differ
(psycopg's ``%s`` and ``%(name)s``), and ``INSERT OR IGNORE`` is ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

from batchd.models import TERMINAL, Event, JobState, ResultState, Submission
from batchd.store import rules
from batchd.store import sqlite_rows as rows
from batchd.store.base import Delivery, DuplicateJob, EndpointHealth
from batchd.store.postgres_db import from_qmark

INSERT_SUBMISSION = from_qmark(rows.INSERT_SUBMISSION) + " ON CONFLICT (id) DO NOTHING"
UPDATE_SUBMISSION_AT_VERSION = from_qmark(rows.UPDATE_SUBMISSION_AT_VERSION)
SELECT_JOBS = rows.SELECT_JOBS
INSERT_JOB = from_qmark(rows.INSERT_JOB)
UPDATE_JOB_AT_VERSION = from_qmark(rows.UPDATE_JOB_AT_VERSION)
INSERT_EVENT = from_qmark(rows.INSERT_EVENT) + " ON CONFLICT (id) DO NOTHING"
UPDATE_DELIVERY = from_qmark(rows.UPDATE_DELIVERY)
UPSERT_HEALTH = from_qmark(rows.UPSERT_HEALTH)

submission_params = rows.submission_params
# sqlite_rows reads a row by column name only (``row[name]``, ``row.keys()``): a dict row does.
submission_from_row = cast(Callable[[dict[str, Any]], Submission], rows.submission_from_row)
job_params = rows.job_params
job_from_row = rows.job_from_row
event_params = rows.event_params
event_from_row = cast(Callable[[dict[str, Any]], Event], rows.event_from_row)
delivery_params = rows.delivery_params
delivery_from_row = cast(Callable[[dict[str, Any]], Delivery], rows.delivery_from_row)
health_params = rows.health_params
health_from_row = cast(Callable[[dict[str, Any]], EndpointHealth], rows.health_from_row)

DUPLICATE_COLUMNS = tuple(f.name for f in dataclasses.fields(DuplicateJob))
INSERT_DUPLICATE = (
    from_qmark(rows._insert("duplicate_jobs", DUPLICATE_COLUMNS))
    + " ON CONFLICT (provider_job_id) DO NOTHING"
)
SELECT_DUPLICATES = rows._select("duplicate_jobs", DUPLICATE_COLUMNS)


def duplicate_params(dup: DuplicateJob) -> dict[str, Any]:
    params = dataclasses.asdict(dup)
    params["state"] = dup.state.value
    params["cancelled"] = int(dup.cancelled)
    return params


def duplicate_from_row(row: dict[str, Any]) -> DuplicateJob:
    values = {c: row[c] for c in DUPLICATE_COLUMNS}
    values["state"] = JobState(values["state"])
    values["cancelled"] = bool(values["cancelled"])
    return DuplicateJob(**values)


def jobs_query(
    states: Sequence[JobState] | None,
    provider: str | None,
    due_before: float | None,
    cancel_requested: bool | None,
    result_pending: bool,
) -> tuple[str, list[object]]:
    where: list[str] = ["TRUE"]
    params: list[object] = []
    if states is not None:
        where.append("state = ANY(%s)")
        params.append(sorted({rules.job_state(s).value for s in states}))
    if result_pending:
        where.append("result_state = %s AND state = ANY(%s)")
        params += [ResultState.PENDING.value, sorted(TERMINAL)]
    if provider is not None:
        where.append("provider = %s")
        params.append(provider)
    if due_before is not None:
        where.append("next_attempt_at <= %s")
        params.append(due_before)
    if cancel_requested is not None:  # a literal: the partial index jobs_cancel_wanted
        where.append("cancel_requested = 1" if cancel_requested else "cancel_requested = 0")
    sql = f"{SELECT_JOBS} WHERE {' AND '.join(where)} ORDER BY next_attempt_at, id LIMIT %s"
    return sql, params
