"""``prune`` for the SQLite store: finished history removed in one transaction.

The candidates go into temporary tables first, so that counting (``apply=False``) and deleting
read exactly the same rows. The order keeps every foreign key valid: deliveries, events, the
duplicates recorded for a submission, jobs, submissions.
"""

from __future__ import annotations

from batchd.store.base import DeliveryState, PruneCounts
from batchd.store.rules import FINISHED
from batchd.store.sqlite_db import Tx

_FINISHED = sorted(FINISHED)
_SETUP = (
    "CREATE TEMP TABLE IF NOT EXISTS prune_events (id TEXT PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS prune_subs (id TEXT PRIMARY KEY)",
    "DELETE FROM temp.prune_events",
    "DELETE FROM temp.prune_subs",
)
_EVENTS = (
    "INSERT INTO temp.prune_events SELECT id FROM events WHERE created_at < ? "
    "AND fanned_out_at IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.state = ?)"
)
_SUBS = (
    "INSERT INTO temp.prune_subs SELECT s.id FROM submissions s "  # noqa: S608
    f"WHERE s.state IN ({', '.join('?' * len(_FINISHED))}) "
    "AND coalesce(s.finished_at, s.created_at) < ? "
    "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.submission_id = s.id "
    "AND e.id NOT IN (SELECT id FROM temp.prune_events)) "
    "AND NOT EXISTS (SELECT 1 FROM events e JOIN jobs j ON e.job_id = j.id "
    "WHERE j.submission_id = s.id AND e.id NOT IN (SELECT id FROM temp.prune_events))"
)
_COUNT_JOBS = "SELECT count(*) FROM jobs WHERE submission_id IN (SELECT id FROM temp.prune_subs)"
_COUNT_DELIVERIES = (
    "SELECT count(*) FROM deliveries WHERE event_id IN (SELECT id FROM temp.prune_events)"
)
_DELETE = (
    "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM temp.prune_events)",
    "DELETE FROM events WHERE id IN (SELECT id FROM temp.prune_events)",
    "DELETE FROM duplicate_jobs WHERE submission_id IN (SELECT id FROM temp.prune_subs)",
    "DELETE FROM jobs WHERE submission_id IN (SELECT id FROM temp.prune_subs)",
    "DELETE FROM submissions WHERE id IN (SELECT id FROM temp.prune_subs)",
)


def prune(
    tx: Tx, *, events_before: float | None, rows_before: float | None, apply: bool
) -> PruneCounts:
    for statement in _SETUP:
        tx.run(statement)
    if events_before is not None:
        tx.run(_EVENTS, (events_before, DeliveryState.PENDING))
    if rows_before is not None:
        tx.run(_SUBS, (*_FINISHED, rows_before))
    counts = PruneCounts(
        submissions=_count(tx, "SELECT count(*) FROM temp.prune_subs"),
        jobs=_count(tx, _COUNT_JOBS),
        events=_count(tx, "SELECT count(*) FROM temp.prune_events"),
        deliveries=_count(tx, _COUNT_DELIVERIES),
    )
    if apply:
        for statement in _DELETE:
            tx.run(statement)
    return counts


def _count(tx: Tx, sql: str) -> int:
    row = tx.row(sql)
    return int(row[0]) if row is not None else 0
