"""Claims: which instance works on a job, a submission or a named task now (an owner and a
lease), as pure rules. The verbs are ``store/claim_verbs.py``'s.

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

The same owner/lease/version triple guards two more kinds of work:

* a **submission** being finished (its results merged into the sink, then DONE):
  ``claim_submission`` holds an ACTIVE submission for one owner, and ``finish_submission(...,
  owner=...)`` refuses with ``LeaseLost`` when another owner holds it;
* a **named task** that one instance at a time does for the whole deployment (the tracker's
  sweep of a provider, its duplicate scans, the cancels it sends): ``claim_task(name, owner,
  lease_s, now=...)`` is True while ``owner`` holds the lease named ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal, Protocol

from batchd.errors import StaleState
from batchd.models import (
    ACTIVE,
    LOCAL,
    TERMINAL,
    Job,
    JobState,
    ResultState,
    Submission,
    SubmissionState,
)

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


class Held(Protocol):
    """What a claim is on: a job, a submission or a named task."""

    @property
    def owner(self) -> str | None: ...
    @property
    def lease_until(self) -> float | None: ...


def held_by_other(held: Held, owner: str, now: float) -> bool:
    return (
        held.owner is not None
        and held.owner != owner
        and held.lease_until is not None
        and held.lease_until > now
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


def renewal_due(job: Held, owner: str, now: float, lease_s: float) -> bool:
    """Whether a claim must write the job: another owner's (or nobody's) job, or one of
    ``owner``'s with less than half its lease left. A job held with more is returned as it is:
    a sweep over 10,000 jobs every 40 s rewrites each only every ``lease_s / 2``."""
    return job.owner != owner or job.lease_until is None or job.lease_until < now + lease_s / 2


def claimed(job: Job, owner: str, until: float) -> Job:
    return replace(job, owner=owner, lease_until=until, version=job.version + 1)


def check_owner(job: Job | Submission, owner: str | None, now: float) -> None:
    """``LeaseLost`` when ``owner`` is given and another owner holds the job (or submission)."""
    if owner is not None and held_by_other(job, owner, now):
        what = "job" if isinstance(job, Job) else "submission"
        raise LeaseLost(f"{what} {job.id}", f"held by {owner}", f"held by {job.owner}")


# ---------------------------------------------------------------------------- submissions


def claim_submission(sub: Submission, owner: str, now: float, lease_s: float) -> Submission | None:
    """The submission held by ``owner`` (renewed when ``renewal_due``; the caller writes it
    when it changed), or None: not ACTIVE, or another owner holds it."""
    if sub.state is not SubmissionState.ACTIVE or held_by_other(sub, owner, now):
        return None
    if not renewal_due(sub, owner, now, lease_s):
        return sub
    return replace(sub, owner=owner, lease_until=now + lease_s, version=sub.version + 1)


# ---------------------------------------------------------------------------- named tasks


@dataclass(frozen=True, slots=True)
class TaskLease:
    """A named lease (``claim_task``): who does that task for the deployment, until when."""

    name: str
    owner: str | None = None
    lease_until: float | None = None
    version: int = 0


def claim_task(
    lease: TaskLease | None, name: str, owner: str, now: float, lease_s: float
) -> TaskLease | None:
    """What to write for ``claim_task``: the lease now held by ``owner``; ``lease`` itself when
    ``owner`` holds it with more than half left (nothing to write); None when another owner
    holds it."""
    current = lease or TaskLease(name)
    if held_by_other(current, owner, now):
        return None
    if lease is not None and not renewal_due(current, owner, now, lease_s):
        return lease
    return TaskLease(name, owner, now + lease_s, current.version + 1)


def renew_task(lease: TaskLease | None, owner: str, now: float, lease_s: float) -> TaskLease | None:
    """``renew_task``: the lease extended to ``now + lease_s`` while ``owner`` still holds it
    (even past its end, as long as nobody took it over); None otherwise."""
    if lease is None or lease.owner != owner:
        return None
    return replace(lease, lease_until=now + lease_s, version=lease.version + 1)


def release_task(lease: TaskLease | None, owner: str) -> TaskLease | None:
    """``release_task``: the lease freed, when ``owner`` holds it; None otherwise."""
    if lease is None or lease.owner != owner:
        return None
    return replace(lease, owner=None, lease_until=None, version=lease.version + 1)
