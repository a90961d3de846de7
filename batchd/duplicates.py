"""Defence in depth behind the reconcile window (issue 12): provider jobs that carry a job's
``batchd_job`` tag but that batchd did not adopt.

Only jobs tagged with this instance's id (``batchd=<instance id>``, the id of this data
directory) are looked at: jobs of other batchd instances sharing the provider account, and jobs
created by hand, are never touched. Such a job is a *duplicate* when its tag points at a job
that already has another provider job, or at a job that ended without one, or (while it is
still active) at no job of this store at all. A job still being created (CREATING, no provider
job yet) is left to the submitter, which adopts what its lookup finds. A job that has ended and
whose tag names no job is left alone too: retention (``batchd gc``) removes the rows of old
finished submissions, so it is most likely one of those.

The tracker checks what its sweeps and periodic scans list; the collector checks a submission's
jobs once more just before writing its summary. A duplicate still running is cancelled at once;
one that already ended is only reported. Each is recorded once in the store with a
``batch.duplicate_cancelled`` event naming both provider jobs, and listed in the submission's
summary.json; its results are never merged.
"""

from __future__ import annotations

from enum import StrEnum

import structlog

from batchd.clock import Clock
from batchd.errors import ProviderError
from batchd.models import ACTIVE, LOCAL, TERMINAL, Job, JobState
from batchd.providers.base import BatchProvider, JobSnapshot, TagQuery
from batchd.store.base import DuplicateJob, EventSpec, JobStore

log = structlog.get_logger(__name__)

EVENT = "batch.duplicate_cancelled"


class Verdict(StrEnum):
    FOREIGN = "foreign"  # not tagged by this instance: not ours to judge
    OURS = "ours"  # the job batchd adopted for that chunk
    CREATING = "creating"  # the chunk is still being created: the submitter adopts it
    GONE = "gone"  # ended, and its tag names no job (likely removed by retention): left alone
    DUPLICATE = "duplicate"  # the chunk has (or ended with) another job, or no chunk at all


def tagged_job_id(snap: JobSnapshot, instance_id: str) -> str | None:
    """The ``batchd_job`` tag of a job this instance created, else None."""
    if snap.metadata.get("batchd") != instance_id:
        return None
    return snap.metadata.get("batchd_job") or None


def classify(snap: JobSnapshot, job: Job | None, instance_id: str) -> Verdict:
    """What a listed provider job is to this instance (pure). ``job`` is the store's job its
    ``batchd_job`` tag names (None when there is none)."""
    if tagged_job_id(snap, instance_id) is None:
        return Verdict.FOREIGN
    if job is None:
        return Verdict.GONE if snap.state in TERMINAL else Verdict.DUPLICATE
    if job.provider_job_id == snap.id:
        return Verdict.OURS
    if job.provider_job_id is None and job.state in LOCAL:
        return Verdict.CREATING
    return Verdict.DUPLICATE


def duplicate_event(dup: DuplicateJob) -> EventSpec:
    return EventSpec(
        EVENT,
        {
            "submission_id": dup.submission_id,
            "job_id": dup.job_id,
            "provider": dup.provider,
            "provider_job_id": dup.provider_job_id,
            "kept_provider_job_id": dup.kept_provider_job_id,
            "state": dup.state.value,
            "raw_status": dup.raw_status,
            "cancelled": dup.cancelled,
            "finished": dup.state in TERMINAL,
            "requests_completed": dup.requests_completed,
        },
    )


class Duplicates:
    """Checks listed provider jobs and settles the duplicates (shared by tracker and submitter)."""

    def __init__(self, store: JobStore, *, clock: Clock, instance_id: str) -> None:
        self._store = store
        self._clock = clock
        self._instance_id = instance_id
        self._settled: set[str] = set()  # provider job ids recorded by this process

    async def check(self, name: str, provider: BatchProvider, snap: JobSnapshot) -> bool:
        """Settle ``snap`` if it is a duplicate; returns whether it was one."""
        if snap.id in self._settled:
            return True
        job_id = tagged_job_id(snap, self._instance_id)
        if job_id is None:
            return False
        job = await self._store.get_job(job_id)
        if classify(snap, job, self._instance_id) is not Verdict.DUPLICATE:
            return False
        await self.settle(name, provider, snap, job, kept=job.provider_job_id if job else None)
        return True

    async def check_submission(self, name: str, provider: BatchProvider, sub_id: str) -> None:
        """Settle the duplicates among the jobs tagged for one submission (the collector, just
        before it writes summary.json). A failed listing is logged: the tracker keeps looking."""
        query = TagQuery({"batchd": self._instance_id, "batchd_submission": sub_id})
        try:
            async for snap in provider.find_tagged(query):
                await self.check(name, provider, snap)
        except ProviderError as exc:
            log.warning("duplicate.check_failed", submission_id=sub_id, error=str(exc))

    async def settle(
        self,
        name: str,
        provider: BatchProvider,
        snap: JobSnapshot,
        job: Job | None,
        *,
        kept: str | None,
    ) -> None:
        """Cancel ``snap`` unless it has ended, then record it with its event (once)."""
        if snap.id in self._settled:
            return
        cancelled = False
        if snap.state in ACTIVE and snap.state is not JobState.CANCELLING:
            try:
                snap = await provider.cancel_job(snap.id)
            except ProviderError as exc:  # the next check tries again
                log.warning("duplicate.cancel_failed", provider_job_id=snap.id, error=str(exc))
                return
            cancelled = True
        dup = DuplicateJob(
            provider_job_id=snap.id,
            provider=name,
            job_id=job.id if job else None,
            submission_id=job.submission_id if job else None,
            kept_provider_job_id=kept,
            state=snap.state,
            raw_status=snap.raw_status,
            cancelled=cancelled or snap.state is JobState.CANCELLING,
            requests_completed=snap.counts.completed,
            found_at=self._clock.now(),
        )
        if await self._store.record_duplicate(dup, event=duplicate_event(dup)):
            log.error(
                "duplicate.found",
                job_id=dup.job_id,
                provider_job_id=dup.provider_job_id,
                kept_provider_job_id=kept,
                state=dup.state.value,
                cancelled=dup.cancelled,
            )
        self._settled.add(snap.id)
