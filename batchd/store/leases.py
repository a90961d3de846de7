"""Claims on jobs: which instance works on a job now (an owner and a lease), as pure rules.

A loop takes its work with ``JobStore.claim_due(stage, owner, lease_s, now=...)``: the due
jobs of its stage that no other owner holds (never held, held by this owner, or the lease has
run out), each now held by ``owner`` until ``now + lease_s``. Two instances on one store
therefore never take the same job at the same time. The owner is the instance id, which
survives a restart, so a daemon takes its own jobs back at once after a crash; another
instance takes them only once the lease has run out.

Every change of a job bumps its ``version`` and the stores write it only where the version is
still the one read (``WHERE version = ?``), so a change decided on a stale read never lands.
``transition_job(..., owner=...)`` refuses with ``LeaseLost`` (a ``StaleState``: nothing
changed) when another owner holds the job, so an instance whose lease ran out in the middle
of a step cannot overwrite the work of the instance that took the job over.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final, Literal

from batchd.errors import StaleState
from batchd.models import ACTIVE, LOCAL, TERMINAL, Job, JobState, ResultState

# How long a claim holds: longer than any pass may run (``loops.DEFAULT_MAX_PASS_S``, after
# which the watchdog restarts a stuck daemon), so a live instance never loses a job mid-step.
LEASE_S: Final = 900.0

Stage = Literal["submit", "track", "collect"]
STAGE_STATES: Final[dict[str, frozenset[JobState]]] = {
    "submit": frozenset(LOCAL),
    "track": frozenset(ACTIVE),
    "collect": frozenset(TERMINAL),  # and results PENDING
}


class LeaseLost(StaleState):
    """Another owner holds the job now (this owner's lease ran out and it was taken over)."""


def in_stage(job: Job, stage: Stage) -> bool:
    if job.state not in STAGE_STATES[stage]:
        return False
    return stage != "collect" or job.result_state is ResultState.PENDING


def held_by_other(job: Job, owner: str, now: float) -> bool:
    return (
        job.owner is not None
        and job.owner != owner
        and job.lease_until is not None
        and job.lease_until > now
    )


def claimable(
    job: Job, stage: Stage, owner: str, now: float, provider: str | None, *, due_only: bool = True
) -> bool:
    return (
        in_stage(job, stage)
        and (job.next_attempt_at <= now or not due_only)
        and (provider is None or job.provider == provider)
        and not held_by_other(job, owner, now)
    )


def renewal_due(job: Job, owner: str, now: float, lease_s: float) -> bool:
    """Whether a claim must write the job: another owner's (or nobody's) job, or one of
    ``owner``'s with less than half its lease left. A job held with more is returned as it is:
    a sweep over 10,000 jobs every 40 s rewrites each only every ``lease_s / 2``."""
    return job.owner != owner or job.lease_until is None or job.lease_until < now + lease_s / 2


def claimed(job: Job, owner: str, until: float) -> Job:
    return replace(job, owner=owner, lease_until=until, version=job.version + 1)


def check_owner(job: Job, owner: str | None, now: float) -> None:
    """``LeaseLost`` when ``owner`` is given and another owner holds the job."""
    if owner is not None and held_by_other(job, owner, now):
        raise LeaseLost(f"job {job.id}", f"held by {owner}", f"held by {job.owner}")
