"""Rows of the SQLite schema (``migrations/*.sql``) to ``models`` values and back."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from batchd.models import (
    Event,
    Job,
    JobState,
    Outcome,
    RequestCounts,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.spool import display_name
from batchd.store.base import Delivery, EndpointHealth
from batchd.store.rules import NewEvent, canonical_json


def _insert(table: str, columns: Sequence[str]) -> str:
    """An INSERT of named parameters; table and column names are the constants below."""
    names, values = ", ".join(columns), ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"  # noqa: S608


def _select(table: str, columns: Sequence[str]) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608


def _update(table: str, columns: Sequence[str], where: str) -> str:
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    return f"UPDATE {table} SET {sets} WHERE {where}"  # noqa: S608


# ---------------------------------------------------------------------------- submissions

SUBMISSION_COLUMNS = (
    "id",
    "route",
    "name",
    "state",
    "provider",
    "endpoint",
    "model",
    "timeout_hours",
    "metadata",
    "outcome",
    "sha256",
    "size_bytes",
    "line_count",
    "chunk_count",
    "origin",
    "results_dir",
    "reason",
    "cancel_requested_at",
    "created_at",
    "accepted_at",
    "finished_at",
    "owner",
    "lease_until",
    "version",
)
# Submission.results (migration 0002), spread over four columns.
RESULT_COLUMNS = ("results_succeeded", "results_failed", "results_missing", "usage")
_SUB_CHANGES = [c for c in (*SUBMISSION_COLUMNS, *RESULT_COLUMNS) if c != "id"]

INSERT_SUBMISSION = _insert("submissions", (*SUBMISSION_COLUMNS, *RESULT_COLUMNS))
UPDATE_SUBMISSION_AT_VERSION = _update(
    "submissions", _SUB_CHANGES, "id = :id AND version = :read_version"
)


def submission_params(sub: Submission) -> dict[str, Any]:
    params: dict[str, Any] = {c: getattr(sub, c) for c in SUBMISSION_COLUMNS}
    params["metadata"] = canonical_json(sub.metadata)
    params["origin"] = None if sub.origin is None else canonical_json(sub.origin)
    params["state"] = sub.state.value
    params["outcome"] = None if sub.outcome is None else sub.outcome.value
    found = sub.results
    params.update(
        results_succeeded=None if found is None else found.succeeded,
        results_failed=None if found is None else found.failed,
        results_missing=None if found is None else found.missing,
        usage=None if found is None else canonical_json(found.usage),
    )
    return params


def submission_from_row(row: sqlite3.Row) -> Submission:
    values = {c: row[c] for c in SUBMISSION_COLUMNS}
    values["state"] = SubmissionState(values["state"])
    values["outcome"] = None if values["outcome"] is None else Outcome(values["outcome"])
    values["metadata"] = json.loads(values["metadata"])
    values["origin"] = None if values["origin"] is None else json.loads(values["origin"])
    values["name"] = display_name(values["name"])  # a row written before names were escaped
    if row["results_succeeded"] is not None:
        values["results"] = ResultCounts(
            row["results_succeeded"],
            row["results_failed"],
            row["results_missing"],
            json.loads(row["usage"] or "{}"),
        )
    return Submission(**values)


# ---------------------------------------------------------------------------- jobs

_COUNTS = tuple(f.name for f in dataclasses.fields(RequestCounts))


def _job_columns() -> tuple[str, ...]:
    """``Job``'s fields in order, ``counts`` spread over four ``counts_*`` columns."""
    columns: list[str] = []
    for f in dataclasses.fields(Job):
        columns += [f"counts_{c}" for c in _COUNTS] if f.name == "counts" else [f.name]
    return tuple(columns)


JOB_COLUMNS = _job_columns()
_JOB_CHANGES = [c for c in JOB_COLUMNS if c not in {"id", "submission_id", "chunk_index"}]
_STATE_AT = JOB_COLUMNS.index("state")
_COUNTS_AT = JOB_COLUMNS.index(f"counts_{_COUNTS[0]}")
_AFTER_COUNTS = _COUNTS_AT + len(_COUNTS)
if JOB_COLUMNS[_AFTER_COUNTS : _AFTER_COUNTS + 3] != ("errors", "result_state", "cancel_requested"):
    raise RuntimeError("job_from_row no longer matches the fields of models.Job")
_JOB_STATES = {s.value: s for s in JobState}
_RESULT_STATES = {s.value: s for s in ResultState}

SELECT_JOBS = _select("jobs", JOB_COLUMNS)
INSERT_JOB = _insert("jobs", JOB_COLUMNS)
UPDATE_JOB_AT_VERSION = _update("jobs", _JOB_CHANGES, "id = :id AND version = :read_version")


def job_params(job: Job) -> dict[str, Any]:
    params: dict[str, Any] = {c: getattr(job, c) for c in JOB_COLUMNS if hasattr(job, c)}
    params["state"] = job.state.value
    params["result_state"] = job.result_state.value
    params["cancel_requested"] = int(job.cancel_requested)
    params["errors"] = canonical_json(list(job.errors))
    params.update({f"counts_{c}": getattr(job.counts, c) for c in _COUNTS})
    return params


def job_from_row(row: Sequence[Any]) -> Job:
    """A row of ``SELECT_JOBS`` (positional: this runs for every job the tracker lists)."""
    errors, result_state, cancel_requested = row[_AFTER_COUNTS : _AFTER_COUNTS + 3]
    values: list[Any] = [
        *row[:_STATE_AT],
        _JOB_STATES[row[_STATE_AT]],
        *row[_STATE_AT + 1 : _COUNTS_AT],
        RequestCounts(*row[_COUNTS_AT:_AFTER_COUNTS]),
        () if errors == "[]" else tuple(json.loads(errors)),
        _RESULT_STATES[result_state],
        bool(cancel_requested),
        *row[_AFTER_COUNTS + 3 :],
    ]
    return Job(*values)


# ---------------------------------------------------------------------------- outbox

INSERT_EVENT = (
    "INSERT INTO events (id, type, created_at, submission_id, job_id, data, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def event_params(new: NewEvent) -> tuple[Any, ...]:
    ev = new.event
    return (ev.id, ev.type, ev.created_at, ev.submission_id, ev.job_id, new.data_json, new.payload)


def event_from_row(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        type=row["type"],
        created_at=row["created_at"],
        data=json.loads(row["data"]),
        submission_id=row["submission_id"],
        job_id=row["job_id"],
    )


DELIVERY_COLUMNS = (
    "state",
    "attempts",
    "next_attempt_at",
    "first_attempt_at",
    "last_status",
    "last_error",
    "delivered_at",
)
UPDATE_DELIVERY = _update(
    "deliveries", DELIVERY_COLUMNS, "event_id = :event_id AND endpoint = :endpoint"
)


def delivery_params(d: Delivery) -> dict[str, Any]:
    return {c: getattr(d, c) for c in ["event_id", "endpoint", *DELIVERY_COLUMNS]}


def delivery_from_row(row: sqlite3.Row) -> Delivery:
    return Delivery(
        event_id=row["event_id"],
        endpoint=row["endpoint"],
        event_type=row["event_type"],
        payload=bytes(row["payload"]),
        **{c: row[c] for c in DELIVERY_COLUMNS},
    )


HEALTH_COLUMNS = (
    "name",
    "disabled_at",
    "disabled_reason",
    "last_success_at",
    "last_failure_at",
    "consecutive_failures",
)
UPSERT_HEALTH = _insert("endpoints", HEALTH_COLUMNS) + (
    " ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in HEALTH_COLUMNS[1:])
)


def health_params(h: EndpointHealth) -> dict[str, Any]:
    return {c: getattr(h, c) for c in HEALTH_COLUMNS}


def health_from_row(row: sqlite3.Row) -> EndpointHealth:
    keys = row.keys()
    extra = {c: row[c] for c in ("pending", "dead") if c in keys}
    return EndpointHealth(**{c: row[c] for c in HEALTH_COLUMNS}, **extra)
