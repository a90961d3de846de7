"""The submission verbs of ``SqliteJobStore`` (claim, accept, reject, finish, cancel, read).

Each write verb is one ``BEGIN IMMEDIATE`` transaction that reads the row, decides with
``store/rules.py`` and writes the row back where its ``version`` is still the one read (bumped
by the write), with its event (the outbox) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from batchd.errors import StaleState, StoreError
from batchd.models import (
    ANSWERED,
    TERMINAL,
    Job,
    Outcome,
    ResultCounts,
    Submission,
    SubmissionState,
)
from batchd.store import rules
from batchd.store.base import ChunkPlan, DuplicateContent, EventSpec, NewSubmission
from batchd.store.sqlite_db import Database, Tx
from batchd.store.sqlite_outbox import insert_event
from batchd.store.sqlite_rows import (
    INSERT_JOB,
    INSERT_SUBMISSION,
    SELECT_JOBS,
    UPDATE_SUBMISSION_AT_VERSION,
    job_from_row,
    job_params,
    submission_from_row,
    submission_params,
)


def _in(values: Sequence[str]) -> str:
    return f"({', '.join('?' * len(values))})"


_TERMINAL = sorted(TERMINAL)
_ANSWERED = sorted(ANSWERED)
_FIND_DUPLICATE = (
    "SELECT * FROM submissions WHERE route = ? AND sha256 = ? "  # noqa: S608
    f"AND (state = ? OR (state = ? AND outcome IN {_in(_ANSWERED)})) "
    "ORDER BY created_at DESC, seq DESC LIMIT ?"
)


def _duplicate_params(route: str, sha256: str) -> tuple[object, ...]:
    return (route, sha256, SubmissionState.ACTIVE, SubmissionState.DONE, *_ANSWERED, 1)


_NEWEST_FIRST = " ORDER BY created_at DESC, seq DESC LIMIT ?"
_BEFORE_SUBMISSION = "(created_at, seq) < (SELECT created_at, seq FROM submissions WHERE id = ?)"
_CANCEL_JOBS = (
    "UPDATE jobs SET cancel_requested = 1, updated_at = ?, version = version + 1 "  # noqa: S608
    f"WHERE submission_id = ? AND cancel_requested = 0 AND state NOT IN {_in(_TERMINAL)}"
)


class SqliteSubmissions:
    """Mixed into ``SqliteJobStore``."""

    _db: Database

    # ------------------------------------------------------------------ helpers
    # Transaction bodies run on the writer thread (``Database.write``): plain functions.
    @staticmethod
    def _submission(tx: Tx, submission_id: str) -> Submission:
        row = tx.row("SELECT * FROM submissions WHERE id = ?", (submission_id,))
        if row is None:
            raise StoreError(f"submission {submission_id} not found")
        return submission_from_row(row)

    @staticmethod
    def _jobs_of(tx: Tx, submission_id: str) -> list[Job]:
        rows = tx.rows(
            SELECT_JOBS + " WHERE submission_id = ? ORDER BY chunk_index", (submission_id,)
        )
        return [job_from_row(r) for r in rows]

    @staticmethod
    def _put_submission(tx: Tx, sub: Submission, event: EventSpec | None, now: float) -> Submission:
        """Write ``sub`` (decided from a read at ``sub.version``) where the row is still at that
        version, bumping it, with ``event``; returns what was written."""
        new_event = rules.build_event(event, now=now, submission_id=sub.id) if event else None
        changed = replace(sub, version=sub.version + 1)
        params = submission_params(changed)
        params["read_version"] = sub.version
        if tx.run(UPDATE_SUBMISSION_AT_VERSION, params) != 1:
            raise StaleState(f"submission {sub.id}", f"version {sub.version}", "a newer version")
        insert_event(tx, new_event)
        return changed

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        sub = rules.new_submission(new, now=now)
        await self._db.write(lambda tx: tx.run(INSERT_SUBMISSION, submission_params(sub)))
        return sub

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        def body(tx: Tx) -> Submission:
            sub = rules.claimed(self._submission(tx, submission_id))
            return self._put_submission(tx, sub, None, now)

        return await self._db.write(body)

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        def body(tx: Tx) -> None:
            sub, event = rules.abandoned(self._submission(tx, submission_id), reason, now=now)
            self._put_submission(tx, sub, event, now)

        await self._db.write(body)

    async def accept_submission(
        self,
        submission_id: str,
        *,
        sha256: str,
        line_count: int,
        results_dir: str,
        chunks: Sequence[ChunkPlan],
        now: float,
        event: EventSpec,
        unique: bool = False,
    ) -> list[Job]:
        def body(tx: Tx) -> list[Job]:
            current = self._submission(tx, submission_id)
            if unique:  # inside BEGIN IMMEDIATE: no other writer can accept it meanwhile
                rows = tx.rows(_FIND_DUPLICATE, _duplicate_params(current.route, sha256))
                if rows and rows[0]["id"] != submission_id:
                    raise DuplicateContent(submission_from_row(rows[0]))
            sub = rules.accepted(
                current,
                sha256=sha256,
                line_count=line_count,
                results_dir=results_dir,
                chunks=len(chunks),
                now=now,
            )
            jobs = rules.new_jobs(sub, chunks, now=now)
            self._put_submission(tx, sub, event, now)
            tx.many(INSERT_JOB, [job_params(j) for j in jobs])
            return jobs

        return await self._db.write(body)

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        def body(tx: Tx) -> None:
            sub = rules.rejected(self._submission(tx, submission_id), reason, now=now)
            self._put_submission(tx, sub, event, now)

        await self._db.write(body)

    async def finish_submission(
        self,
        submission_id: str,
        outcome: Outcome,
        *,
        now: float,
        event: EventSpec,
        results: ResultCounts | None = None,
        results_dir: str | None = None,
        owner: str | None = None,
    ) -> Submission:
        def body(tx: Tx) -> Submission:
            current = self._submission(tx, submission_id)
            jobs = self._jobs_of(tx, submission_id)
            sub = rules.finished(
                current,
                outcome,
                jobs,
                now=now,
                results=results,
                results_dir=results_dir,
                owner=owner,
            )
            return self._put_submission(tx, sub, event, now)

        return await self._db.write(body)

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        def body(tx: Tx) -> Submission:
            sub = rules.results_moved(self._submission(tx, submission_id), results_dir)
            return self._put_submission(tx, sub, None, 0.0)

        return await self._db.write(body)

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        def body(tx: Tx) -> Submission:
            current = self._submission(tx, submission_id)
            sub = rules.cancel_requested(current, now=now)
            if sub is None:
                return current
            written = self._put_submission(tx, sub, event, now)
            tx.run(_CANCEL_JOBS, (now, sub.id, *_TERMINAL))
            return written

        return await self._db.write(body)

    async def get_submission(self, submission_id: str) -> Submission | None:
        row = await self._db.fetch_one("SELECT * FROM submissions WHERE id = ?", (submission_id,))
        return None if row is None else submission_from_row(row)

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        where, params = ["1"], []
        if after is not None:
            where.append(_BEFORE_SUBMISSION)
            params.append(after)
        if states is not None:
            where.append(f"state IN {_in(states)}")
            params += [str(s) for s in states]
        if route is not None:
            where.append("route = ?")
            params.append(route)
        sql = f"SELECT * FROM submissions WHERE {' AND '.join(where)}{_NEWEST_FIRST}"  # noqa: S608
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [submission_from_row(r) for r in rows]

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        row = await self._db.fetch_one(_FIND_DUPLICATE, _duplicate_params(route, sha256))
        return None if row is None else submission_from_row(row)

    async def results_dir_taken(self, results_dir: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM submissions WHERE results_dir = ? AND state = ? LIMIT 1",
            (results_dir, SubmissionState.ACTIVE),
        )
        return row is not None
