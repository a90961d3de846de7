"""Domain types and pure decisions. No I/O here.

A *submission* is one accepted input file; it is split into one or more *jobs* (chunks), each
of which becomes exactly one provider batch job. States are strings in the database; the enums
below name them and group them into the sets the loops ask about.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where one chunk stands. The provider-neutral states come from ``providers/*`` mapping;
    ``NEW``/``UPLOADED``/``CREATING`` are ours, before the provider knows the job; ``LOST`` is
    ours too, for a job the provider no longer knows (404)."""

    NEW = "new"  # intent committed; nothing sent yet
    UPLOADED = "uploaded"  # input file uploaded, its id recorded
    CREATING = "creating"  # create sent (or about to be): reconcile before resending
    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    UNKNOWN = "unknown"  # a status the provider module did not recognise: keep polling, warn
    SUCCEEDED = "succeeded"  # may still contain per-request failures
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    LOST = "lost"  # the provider answered 404 for a job it had created


LOCAL: frozenset[JobState] = frozenset({JobState.NEW, JobState.UPLOADED, JobState.CREATING})
ACTIVE: frozenset[JobState] = frozenset(
    {JobState.PENDING, JobState.RUNNING, JobState.CANCELLING, JobState.UNKNOWN}
)
TERMINAL: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED, JobState.LOST}
)
# States a provider snapshot can report (the subset a provider module may return).
PROVIDER_STATES: frozenset[JobState] = ACTIVE | (TERMINAL - {JobState.LOST})


class ResultState(StrEnum):
    """Collection of one job's output and error files."""

    NONE = "none"  # the job is not terminal yet
    PENDING = "pending"  # terminal: download and verify
    COLLECTED = "collected"  # files downloaded and verified (possibly none to fetch)
    UNAVAILABLE = "unavailable"  # the provider no longer has the content (404) or never will


class SubmissionState(StrEnum):
    CLAIMING = "claiming"  # row committed; its source is about to take it (a file: renamed)
    CLAIMED = "claimed"  # in processing/, waiting for validation
    ACTIVE = "active"  # accepted and split into jobs
    DONE = "done"  # results written to done/<name>/
    REJECTED = "rejected"  # moved to rejected/ with a reason
    ABANDONED = "abandoned"  # the file vanished before it could be claimed


SUBMISSION_OPEN: frozenset[SubmissionState] = frozenset(
    {SubmissionState.CLAIMING, SubmissionState.CLAIMED, SubmissionState.ACTIVE}
)


class Outcome(StrEnum):
    """How a finished submission ended, decided from its results (see ``outcome_for``)."""

    SUCCEEDED = "succeeded"  # every request answered, none with an error
    COMPLETED_WITH_ERRORS = "completed_with_errors"  # every request answered, some with errors
    PARTIAL = "partial"  # some requests have no answer (a job failed, expired, got lost...)
    FAILED = "failed"  # no request has an answer (every job failed, got lost...)
    CANCELLED = "cancelled"  # cancelled by the user before every request was answered


# Outcomes where every request was answered: dropping the same content again is a duplicate.
# After any other outcome, dropping it again is how a user retries.
ANSWERED: frozenset[Outcome] = frozenset({Outcome.SUCCEEDED, Outcome.COMPLETED_WITH_ERRORS})


# Transitions the store accepts (compare-and-set on top of this table).
_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.NEW: frozenset(
        {JobState.UPLOADED, JobState.CREATING, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.UPLOADED: frozenset(
        {JobState.NEW, JobState.CREATING, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.CREATING: frozenset({JobState.UPLOADED, JobState.NEW} | ACTIVE | TERMINAL),
}
for _s in ACTIVE:
    _ALLOWED[_s] = frozenset((ACTIVE | TERMINAL) - {_s})
for _s in TERMINAL:
    _ALLOWED[_s] = frozenset()


def can_transition(old: JobState, new: JobState) -> bool:
    return new in _ALLOWED[old]


# ---------------------------------------------------------------------------- value objects


@dataclass(frozen=True, slots=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ResultCounts:
    """What a finished submission's results hold: requests answered without an error, answered
    with one, and left without an answer; token usage summed over the successful answers."""

    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.succeeded + self.failed + self.missing


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    submission_id: str
    chunk_index: int
    provider: str
    state: JobState
    line_start: int  # 0-based index of the chunk's first request in the submission
    line_count: int
    byte_count: int
    raw_status: str | None = None
    provider_job_id: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: RequestCounts = RequestCounts()
    errors: tuple[dict[str, Any], ...] = ()
    result_state: ResultState = ResultState.NONE
    cancel_requested: bool = False
    attempts: int = 0
    next_attempt_at: float = 0.0
    poll_interval_s: float = 0.0
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    provider_created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    terminal_at: float | None = None
    collected_at: float | None = None
    # CREATING: no create sent so far can take effect after this time (committed before each
    # create is sent), and how many lookups by tag have missed since the last create.
    reconcile_until: float | None = None
    lookups: int = 0
    # Claims (``store/leases.py``): the instance working on the job and until when; ``version``
    # is bumped by every change and checked by every conditional update.
    owner: str | None = None
    lease_until: float | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class Submission:
    id: str
    route: str
    name: str  # the file name as dropped (validated against the allow-list)
    state: SubmissionState
    provider: str
    endpoint: str
    model: str | None
    timeout_hours: int
    metadata: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    sha256: str | None = None
    size_bytes: int = 0
    line_count: int = 0
    chunk_count: int = 0
    # Where it came from: a source-specific JSON object whose "source" names the source (the
    # drop folder's is ``folder_origin.FolderOrigin``); None when the source keeps none.
    origin: dict[str, Any] | None = None
    results_dir: str | None = None
    reason: str | None = None
    cancel_requested_at: float | None = None
    created_at: float = 0.0
    accepted_at: float | None = None
    finished_at: float | None = None
    results: ResultCounts | None = None  # set when DONE
    # Claims (``store/leases.py``): the instance finishing the submission and until when;
    # ``version`` is bumped by every change and checked by every conditional update.
    owner: str | None = None
    lease_until: float | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the outbox. ``id`` is stable for ever: it is the webhook-id."""

    id: str
    type: str
    created_at: float
    data: dict[str, Any]
    submission_id: str | None = None
    job_id: str | None = None


# ---------------------------------------------------------------------------- pure decisions


def new_id(prefix: str, now: float | None = None) -> str:
    """A sortable, unique id: ``<prefix>_<ms since epoch, hex><12 random hex>``. No dots."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{ms:011x}{secrets.token_hex(6)}"


def event_type_for(state: JobState) -> str | None:
    """The outbox event a job emits when it enters ``state`` (None: no event)."""
    return {
        JobState.PENDING: "batch.created",
        JobState.RUNNING: "batch.running",
        JobState.CANCELLING: "batch.cancelling",
        JobState.SUCCEEDED: "batch.succeeded",
        JobState.FAILED: "batch.failed",
        JobState.EXPIRED: "batch.expired",
        JobState.CANCELLED: "batch.cancelled",
        JobState.LOST: "batch.lost",
        JobState.UNKNOWN: "batch.unknown_status",
    }.get(state)


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff ``base * 2**attempt`` capped at ``cap``, with +/- ``jitter`` spread."""
    raw = min(cap_s, base_s * 2.0 ** min(max(0, attempt), 60))
    spread = (rng or random).uniform(1.0 - jitter, 1.0 + jitter)
    return min(cap_s * (1.0 + jitter), raw * spread)


def outcome_for(counts: ResultCounts, *, cancel_requested: bool) -> Outcome:
    """Decide a finished submission's outcome from its results, not from how its jobs ended:
    a run whose every request was answered is not ``cancelled``, even if a cancel was
    requested (it came too late)."""
    if counts.missing == 0:
        return Outcome.COMPLETED_WITH_ERRORS if counts.failed else Outcome.SUCCEEDED
    if cancel_requested:
        return Outcome.CANCELLED
    return Outcome.PARTIAL if counts.succeeded or counts.failed else Outcome.FAILED


def cancel_too_late(counts: ResultCounts, *, cancel_requested: bool) -> bool:
    """A cancel was requested, yet every request had been answered already."""
    return cancel_requested and counts.missing == 0
