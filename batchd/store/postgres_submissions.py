"""The submission verbs of ``PostgresJobStore`` (claim, accept, reject, finish, cancel, read).

Each write verb is one transaction that locks the submission row (``FOR UPDATE``), decides with
``store/rules.py`` and writes the row back where its ``version`` is still the one read (bumped
by the write), with its event (the outbox) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

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
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_live import notify
from batchd.store.postgres_outbox import insert_event
from batchd.store.postgres_rows import (
    INSERT_JOB,
    INSERT_SUBMISSION,
    SELECT_JOBS,
    UPDATE_SUBMISSION_AT_VERSION,
    job_from_row,
    job_params,
    submission_from_row,
    submission_params,
)

_TERMINAL = sorted(TERMINAL)
_ANSWERED = sorted(ANSWERED)
_FIND_DUPLICATE = (
    "SELECT * FROM submissions WHERE route = %s AND sha256 = %s "
    "AND (state = %s OR (state = %s AND outcome = ANY(%s))) "
    "ORDER BY created_at DESC, seq DESC LIMIT 1"
)
# Two accepts of the same content on one route queue here (a transaction advisory lock).
_CONTENT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _duplicate_params(route: str, sha256: str) -> tuple[object, ...]:
    return (route, sha256, SubmissionState.ACTIVE, SubmissionState.DONE, _ANSWERED)


_NEWEST_FIRST = " ORDER BY created_at DESC, seq DESC LIMIT %s"
_BEFORE_SUBMISSION = "(created_at, seq) < (SELECT created_at, seq FROM submissions WHERE id = %s)"
_CANCEL_JOBS = (
    "UPDATE jobs SET cancel_requested = 1, updated_at = %s, version = version + 1 "
    "WHERE submission_id = %s AND cancel_requested = 0 AND NOT (state = ANY(%s))"
)


class PostgresSubmissions:
    """Mixed into ``PostgresJobStore``."""

    _db: Database

    # ------------------------------------------------------------------ helpers
    @staticmethod
    async def _submission(tx: Tx, submission_id: str) -> Submission:
        row = await tx.row("SELECT * FROM submissions WHERE id = %s FOR UPDATE", (submission_id,))
        if row is None:
            raise StoreError(f"submission {submission_id} not found")
        return submission_from_row(row)

    @staticmethod
    async def _jobs_of(tx: Tx, submission_id: str) -> list[Job]:
        rows = await tx.tuples(
            SELECT_JOBS + " WHERE submission_id = %s ORDER BY chunk_index", (submission_id,)
        )
        return [job_from_row(r) for r in rows]

    @staticmethod
    async def _put_submission(
        tx: Tx, sub: Submission, event: EventSpec | None, now: float
    ) -> Submission:
        """Write ``sub`` (decided from a read at ``sub.version``) where the row is still at that
        version, bumping it, with ``event``; returns what was written."""
        new_event = rules.build_event(event, now=now, submission_id=sub.id) if event else None
        changed = replace(sub, version=sub.version + 1)
        params = submission_params(changed)
        params["read_version"] = sub.version
        if await tx.run(UPDATE_SUBMISSION_AT_VERSION, params) != 1:
            raise StaleState(f"submission {sub.id}", f"version {sub.version}", "a newer version")
        await insert_event(tx, new_event)
        return changed

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        sub = rules.new_submission(new, now=now)

        async def body(tx: Tx) -> None:
            await tx.run(INSERT_SUBMISSION, submission_params(sub))

        await self._db.write(body)
        return sub

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        async def body(tx: Tx) -> Submission:
            sub = rules.claimed(await self._submission(tx, submission_id))
            return await self._put_submission(tx, sub, None, now)

        return await self._db.write(body)

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        async def body(tx: Tx) -> None:
            current = await self._submission(tx, submission_id)
            sub, event = rules.abandoned(current, reason, now=now)
            await self._put_submission(tx, sub, event, now)

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
        async def body(tx: Tx) -> list[Job]:
            current = await self._submission(tx, submission_id)
            if unique:  # under the content's lock: no other accept of it can run meanwhile
                await tx.run(_CONTENT_LOCK, (f"batchd.content.{current.route}.{sha256}",))
                rows = await tx.rows(_FIND_DUPLICATE, _duplicate_params(current.route, sha256))
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
            await self._put_submission(tx, sub, event, now)
            await tx.many(INSERT_JOB, [job_params(j) for j in jobs])
            await notify(tx, "submit")
            return jobs

        return await self._db.write(body)

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        async def body(tx: Tx) -> None:
            sub = rules.rejected(await self._submission(tx, submission_id), reason, now=now)
            await self._put_submission(tx, sub, event, now)

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
        async def body(tx: Tx) -> Submission:
            current = await self._submission(tx, submission_id)
            jobs = await self._jobs_of(tx, submission_id)
            sub = rules.finished(
                current,
                outcome,
                jobs,
                now=now,
                results=results,
                results_dir=results_dir,
                owner=owner,
            )
            return await self._put_submission(tx, sub, event, now)

        return await self._db.write(body)

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        async def body(tx: Tx) -> Submission:
            sub = rules.results_moved(await self._submission(tx, submission_id), results_dir)
            return await self._put_submission(tx, sub, None, 0.0)

        return await self._db.write(body)

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        async def body(tx: Tx) -> Submission:
            current = await self._submission(tx, submission_id)
            sub = rules.cancel_requested(current, now=now)
            if sub is None:
                return current
            written = await self._put_submission(tx, sub, event, now)
            await tx.run(_CANCEL_JOBS, (now, sub.id, _TERMINAL))
            return written

        return await self._db.write(body)

    async def get_submission(self, submission_id: str) -> Submission | None:
        row = await self._db.fetch_one("SELECT * FROM submissions WHERE id = %s", (submission_id,))
        return None if row is None else submission_from_row(row)

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if after is not None:
            where.append(_BEFORE_SUBMISSION)
            params.append(after)
        if states is not None:
            where.append("state = ANY(%s)")
            params.append([str(s) for s in states])
        if route is not None:
            where.append("route = %s")
            params.append(route)
        sql = f"SELECT * FROM submissions WHERE {' AND '.join(where)}{_NEWEST_FIRST}"  # noqa: S608
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [submission_from_row(r) for r in rows]

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        row = await self._db.fetch_one(_FIND_DUPLICATE, _duplicate_params(route, sha256))
        return None if row is None else submission_from_row(row)

    async def results_dir_taken(self, results_dir: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 AS taken FROM submissions WHERE results_dir = %s AND state = %s LIMIT 1",
            (results_dir, SubmissionState.ACTIVE),
        )
        return row is not None
