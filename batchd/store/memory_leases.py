"""The claim verbs of ``MemoryJobStore``: jobs, submissions and named tasks (the rules are
``store/leases.py``'s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from batchd.models import Job, Submission
from batchd.store import leases
from batchd.store.leases import Stage


class MemoryLeases:
    """Mixed into ``MemoryJobStore``: like its other verbs, each decides and changes its dict
    without awaiting in between, so a claim is atomic among tasks."""

    _jobs: dict[str, Job]
    _subs: dict[str, Submission]
    _tasks: dict[str, leases.TaskLease]

    async def claim_due(
        self,
        stage: Stage,
        owner: str,
        lease_s: float,
        *,
        now: float,
        limit: int = 100,
        provider: str | None = None,
        due_only: bool = True,
    ) -> list[Job]:
        def free(j: Job) -> bool:
            return leases.claimable(j, stage, owner, now, provider, due_only=due_only)

        due = sorted(
            filter(free, self._jobs.values()),
            key=lambda j: (j.next_attempt_at, j.id),
        )
        taken = []
        for job in due[: max(0, limit)]:
            new = job
            if leases.renewal_due(job, owner, now, lease_s):
                new = leases.claimed(job, owner, now + lease_s)
            self._jobs[job.id] = new
            taken.append(replace(new, errors=tuple(dict(e) for e in new.errors)))
        return taken

    async def reschedule_jobs(self, job_ids: Sequence[str], next_attempt_at: float) -> int:
        found = [i for i in dict.fromkeys(job_ids) if i in self._jobs]
        for job_id in found:
            job = self._jobs[job_id]
            self._jobs[job_id] = replace(
                job, next_attempt_at=float(next_attempt_at), version=job.version + 1
            )
        return len(found)

    async def claim_submission(
        self, submission_id: str, owner: str, lease_s: float, *, now: float
    ) -> Submission | None:
        sub = self._subs.get(submission_id)
        held = None if sub is None else leases.claim_submission(sub, owner, now, lease_s)
        if held is None:
            return None
        self._subs[held.id] = held
        return replace(held, metadata=dict(held.metadata))

    async def claim_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        return self._put_task(
            name, leases.claim_task(self._tasks.get(name), name, owner, now, lease_s)
        )

    async def renew_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        return self._put_task(name, leases.renew_task(self._tasks.get(name), owner, now, lease_s))

    async def release_task(self, name: str, owner: str) -> bool:
        return self._put_task(name, leases.release_task(self._tasks.get(name), owner))

    def _put_task(self, name: str, lease: leases.TaskLease | None) -> bool:
        if lease is None:
            return False
        self._tasks[name] = lease
        return True
