"""Rows of the PostgreSQL schema (``migrations_pg/``) to ``models`` values and back.

The columns, their names and their encodings (canonical JSON text, states as their values)
are the SQLite schema's, so the conversions are ``sqlite_rows``'s; only the placeholders differ
(psycopg's ``%s`` and ``%(name)s``), and ``INSERT OR IGNORE`` is ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from batchd.models import Event, JobState, Submission
from batchd.store import sqlite_rows as rows
from batchd.store.base import Delivery, DuplicateJob, EndpointHealth
from batchd.store.postgres_db import from_qmark

INSERT_SUBMISSION = from_qmark(rows.INSERT_SUBMISSION) + " ON CONFLICT (id) DO NOTHING"
UPDATE_SUBMISSION = from_qmark(rows.UPDATE_SUBMISSION)
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
