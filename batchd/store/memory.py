"""``MemoryJobStore``: the job store in a few dicts, for tests of the loops and users' tests.

It keeps every rule of ``batchd.store.base`` exactly as the SQLite store does (the same
behaviour suite runs against both): each verb validates and decides everything first (through
``batchd.store.rules``) and only then changes its dicts, without awaiting in between, so a verb
is one atomic "transaction" even with many tasks. Values handed out are fresh copies.
Nothing survives the process; ``open()`` and ``close()`` are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from batchd.errors import StoreError
from batchd.models import (
    ACTIVE,
    ANSWERED,
    LOCAL,
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    JobState,
    Outcome,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.store import leases, rules
from batchd.store.base import (
    ChunkPlan,
    DeliveryState,
    DuplicateContent,
    DuplicateJob,
    EventSpec,
    NewSubmission,
    PruneCounts,
    StoreStats,
)
from batchd.store.memory_duplicates import MemoryDuplicates
from batchd.store.memory_leases import MemoryLeases
from batchd.store.memory_outbox import first


def _copy_job(job: Job) -> Job:
    return replace(job, errors=tuple(dict(e) for e in job.errors)) if job.errors else job


def _copy_submission(sub: Submission) -> Submission:
    results = None if sub.results is None else replace(sub.results, usage=dict(sub.results.usage))
    return replace(sub, metadata=dict(sub.metadata), results=results)


class MemoryJobStore(MemoryDuplicates, MemoryLeases):
    """A ``JobStore`` held in memory. Same behaviour as ``SqliteJobStore``, no durability."""

    def __init__(self) -> None:
        super().__init__()
        self._subs: dict[str, Submission] = {}
        self._sub_seq: dict[str, int] = {}
        self._jobs: dict[str, Job] = {}
        self._duplicates: dict[str, DuplicateJob] = {}
        self._tasks: dict[str, leases.TaskLease] = {}
        self._deployment: str | None = None

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def integrity_check(self) -> list[str]:
        problems = [
            f"job {j.id}: no submission {j.submission_id}"
            for j in self._jobs.values()
            if j.submission_id not in self._subs
        ]
        return problems + [
            f"event {e.event.id}: dangling reference"
            for e in self._events.values()
            if (e.event.submission_id or "") not in {"", *self._subs}
            or (e.event.job_id or "") not in {"", *self._jobs}
        ]

    async def deployment_id(self, proposed: str, *, now: float) -> str:
        if self._deployment is None:
            self._deployment = proposed
        return self._deployment

    async def stats(self) -> StoreStats:
        return StoreStats(
            open_submissions=sum(s.state in SUBMISSION_OPEN for s in self._subs.values()),
            open_jobs=sum(j.state in LOCAL | ACTIVE for j in self._jobs.values()),
            pending_downloads=sum(
                j.result_state is ResultState.PENDING for j in self._jobs.values()
            ),
            undelivered_events=sum(e.fanned_out_at is None for e in self._events.values())
            + sum(d.state == DeliveryState.PENDING for d in self._deliveries.values()),
        )

    # ------------------------------------------------------------------ helpers
    def _sub(self, submission_id: str) -> Submission:
        sub = self._subs.get(submission_id)
        if sub is None:
            raise StoreError(f"submission {submission_id} not found")
        return sub

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise StoreError(f"job {job_id} not found")
        return job

    def _put_sub(self, sub: Submission, event: EventSpec | None, now: float) -> Submission:
        """Commit a submission change (its version bumped) and its event (built first: it may
        still fail); returns a copy of what was committed."""
        new = rules.build_event(event, now=now, submission_id=sub.id) if event else None
        sub = replace(sub, version=sub.version + 1)
        self._subs[sub.id] = sub
        self._add_event(new)
        return _copy_submission(sub)

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        sub = rules.new_submission(new, now=now)
        self._subs[sub.id] = sub
        self._sub_seq[sub.id] = next(self._seq)
        return _copy_submission(sub)

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        return self._put_sub(rules.claimed(self._sub(submission_id)), None, now)

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        sub, event = rules.abandoned(self._sub(submission_id), reason, now=now)
        self._put_sub(sub, event, now)

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
        current = self._sub(submission_id)
        earlier = self._duplicate_of(current.route, sha256) if unique else None
        if earlier is not None and earlier.id != submission_id:
            raise DuplicateContent(_copy_submission(earlier))
        sub = rules.accepted(
            self._sub(submission_id),
            sha256=sha256,
            line_count=line_count,
            results_dir=results_dir,
            chunks=len(chunks),
            now=now,
        )
        jobs = rules.new_jobs(sub, chunks, now=now)
        self._put_sub(sub, event, now)
        self._jobs.update((j.id, j) for j in jobs)
        return list(jobs)

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        self._put_sub(rules.rejected(self._sub(submission_id), reason, now=now), event, now)

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
        jobs = await self.jobs_for_submission(submission_id)
        current = self._sub(submission_id)
        sub = rules.finished(
            current,
            outcome,
            jobs,
            now=now,
            results=results,
            results_dir=results_dir,
            owner=owner,
        )
        return self._put_sub(sub, event, now)

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        sub = rules.results_moved(self._sub(submission_id), results_dir)
        return self._put_sub(sub, None, 0.0)

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        current = self._sub(submission_id)
        sub = rules.cancel_requested(current, now=now)
        if sub is None:
            return _copy_submission(current)
        written = self._put_sub(sub, event, now)
        for job in list(self._jobs.values()):
            if (
                job.submission_id == sub.id
                and job.state not in TERMINAL
                and not job.cancel_requested
            ):
                self._jobs[job.id] = replace(
                    job, cancel_requested=True, updated_at=now, version=job.version + 1
                )
        return written

    async def get_submission(self, submission_id: str) -> Submission | None:
        sub = self._subs.get(submission_id)
        return None if sub is None else _copy_submission(sub)

    def _newestfirst(self, subs: Iterable[Submission]) -> list[Submission]:
        return sorted(subs, key=lambda s: (s.created_at, self._sub_seq[s.id]), reverse=True)

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        wanted = None if states is None else {str(s) for s in states}
        found = (
            s
            for s in self._subs.values()
            if (wanted is None or s.state.value in wanted) and (route is None or s.route == route)
        )
        listed = self._newestfirst(found)
        if after is not None:
            anchor = self._subs.get(after)
            key = (anchor.created_at, self._sub_seq[after]) if anchor else None
            listed = [s for s in listed if key and (s.created_at, self._sub_seq[s.id]) < key]
        return [_copy_submission(s) for s in first(listed, limit)]

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        found = self._duplicate_of(route, sha256)
        return None if found is None else _copy_submission(found)

    def _duplicate_of(self, route: str, sha256: str) -> Submission | None:
        """The newest ACTIVE or answered DONE submission of ``route`` with this content
        (synchronous: a verb that checks it cannot be interleaved with another)."""
        return next(
            (
                s
                for s in self._newestfirst(self._subs.values())
                if s.route == route
                and s.sha256 == sha256
                and (
                    s.state is SubmissionState.ACTIVE
                    or (s.state is SubmissionState.DONE and s.outcome in ANSWERED)
                )
            ),
            None,
        )

    async def results_dir_taken(self, results_dir: str) -> bool:
        return any(
            s.results_dir == results_dir and s.state is SubmissionState.ACTIVE
            for s in self._subs.values()
        )

    # ------------------------------------------------------------------ jobs
    async def get_job(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return None if job is None else _copy_job(job)

    async def find_job(self, any_id: str) -> Job | None:
        job = self._jobs.get(any_id)
        if job is None:
            matches = [j for j in self._jobs.values() if j.provider_job_id == any_id]
            job = min(matches, key=lambda j: j.id, default=None)
        return None if job is None else _copy_job(job)

    async def jobs_for_submission(self, submission_id: str) -> list[Job]:
        jobs = (j for j in self._jobs.values() if j.submission_id == submission_id)
        return [_copy_job(j) for j in sorted(jobs, key=lambda j: j.chunk_index)]

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] | None = None,
        provider: str | None = None,
        due_before: float | None = None,
        cancel_requested: bool | None = None,
        result_pending: bool = False,
        limit: int = 100_000,
    ) -> list[Job]:
        wanted = None if states is None else {rules.job_state(s) for s in states}

        def keep(j: Job) -> bool:
            return (
                (wanted is None or j.state in wanted)
                and (provider is None or j.provider == provider)
                and (due_before is None or j.next_attempt_at <= due_before)
                and (cancel_requested is None or j.cancel_requested == cancel_requested)
                and (not result_pending or _result_pending(j))
            )

        found = sorted(filter(keep, self._jobs.values()), key=lambda j: (j.next_attempt_at, j.id))
        return [_copy_job(j) for j in first(found, limit)]

    async def transition_job(
        self,
        job_id: str,
        expected: JobState,
        new: JobState,
        *,
        now: float,
        event: EventSpec | None = None,
        owner: str | None = None,
        **fields: Any,
    ) -> Job:
        job = self._job(job_id)
        changed = rules.transitioned(job, expected, new, now=now, fields=fields, owner=owner)
        built = (
            rules.build_event(event, now=now, submission_id=job.submission_id, job_id=job.id)
            if event
            else None
        )
        self._jobs[job.id] = changed
        self._add_event(built)
        return _copy_job(changed)

    # ------------------------------------------------------------------ housekeeping
    async def prune(
        self, *, events_before: float | None, rows_before: float | None, apply: bool
    ) -> PruneCounts:
        states: dict[str, list[str]] = {}
        for (event_id, _), delivery in self._deliveries.items():
            states.setdefault(event_id, []).append(delivery.state)
        events = [
            e.event.id
            for e in self._events.values()
            if rules.event_prunable(
                e.event.created_at, e.fanned_out_at, states.get(e.event.id, []), events_before
            )
        ]
        gone = set(events)
        referred = {
            ref
            for e in self._events.values()
            if e.event.id not in gone
            for ref in (e.event.submission_id, self._job_owner(e.event.job_id))
            if ref is not None
        }
        subs = [
            s.id
            for s in self._subs.values()
            if rules.submission_prunable(s, rows_before) and s.id not in referred
        ]
        removed = set(subs)
        jobs = [j.id for j in self._jobs.values() if j.submission_id in removed]
        counts = PruneCounts(
            len(subs), len(jobs), len(events), sum(len(states.get(e, [])) for e in events)
        )
        if apply:
            for key in [k for k in self._deliveries if k[0] in gone]:
                del self._deliveries[key]
            for event_id in events:
                del self._events[event_id]
            for job_id in jobs:
                del self._jobs[job_id]
            for dup_id in [k for k, d in self._duplicates.items() if d.submission_id in removed]:
                del self._duplicates[dup_id]
            for sub_id in subs:
                del self._subs[sub_id]
                self._sub_seq.pop(sub_id, None)
        return counts

    def _job_owner(self, job_id: str | None) -> str | None:
        job = self._jobs.get(job_id or "")
        return None if job is None else job.submission_id

    async def compact(self, *, full: bool = False) -> int:
        return 0  # nothing to give back: deleted entries are gone from memory


def _result_pending(job: Job) -> bool:
    return job.state in TERMINAL and job.result_state is ResultState.PENDING
