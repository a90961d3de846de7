"""Read-only looks into a running daemon's SQLite database (WAL allows a concurrent reader).

The benchmark reads three facts the daemon commits anyway: when each job was created at the
provider (the ``batch.created`` event), when the tracker recorded a terminal state
(``jobs.terminal_at``) and when a submission's results were on disk (``finished_at``). Plain SQL
on a read-only connection: this is the harness, not the product, and it never writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def reader(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if not path.exists():
        return []
    try:
        with reader(path) as conn:
            return list(conn.execute(sql, params))
    except sqlite3.OperationalError:  # not migrated yet
        return []


def created_count(path: Path) -> int:
    rows = _rows(path, "SELECT count(*) FROM events WHERE type = 'batch.created'")
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def created_times(path: Path) -> dict[str, float]:
    """Submission name -> time of its (last) ``batch.created`` event."""
    rows = _rows(
        path,
        "SELECT s.name, max(e.created_at) FROM events e JOIN submissions s"
        " ON s.id = e.submission_id WHERE e.type = 'batch.created' GROUP BY s.name",
    )
    return {str(name): float(at) for name, at in rows}  # type: ignore[arg-type]


def terminal_times(path: Path) -> dict[str, float]:
    """Provider job id -> when the tracker recorded its terminal state."""
    rows = _rows(
        path,
        "SELECT provider_job_id, terminal_at FROM jobs"
        " WHERE terminal_at IS NOT NULL AND provider_job_id IS NOT NULL",
    )
    return {str(pid): float(at) for pid, at in rows}  # type: ignore[arg-type]


def finished(path: Path) -> dict[str, float]:
    """Submission name -> when it was finished (results on disk, DONE committed)."""
    rows = _rows(path, "SELECT name, finished_at FROM submissions WHERE finished_at IS NOT NULL")
    return {str(name): float(at) for name, at in rows}  # type: ignore[arg-type]


def provider_job_ids(path: Path) -> dict[str, str]:
    """Submission name -> provider job id of its first chunk."""
    rows = _rows(
        path,
        "SELECT s.name, j.provider_job_id FROM jobs j JOIN submissions s"
        " ON s.id = j.submission_id WHERE j.provider_job_id IS NOT NULL AND j.chunk_index = 0",
    )
    return {str(name): str(pid) for name, pid in rows}


def terminal_records(path: Path) -> dict[str, tuple[float, float | None]]:
    """Provider job id -> (``terminal_at``, the provider's ``completed_at``)."""
    rows = _rows(
        path,
        "SELECT provider_job_id, terminal_at, completed_at FROM jobs"
        " WHERE terminal_at IS NOT NULL AND provider_job_id IS NOT NULL",
    )
    return {
        str(pid): (float(at), None if done is None else float(done))  # type: ignore[arg-type]
        for pid, at, done in rows
    }
