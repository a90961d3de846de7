"""The ``JobStore`` seam: domain verbs over submissions, jobs and the event outbox.

Rules every implementation keeps (the behaviour suite in ``tests/integration/store`` checks them):

* Every write verb is one transaction. A verb that takes ``event=`` writes that event in the
  *same* transaction as the state change (transactional outbox): both happen or neither does.
* Job and submission transitions are compare-and-set: the verb names the state it expects and
  raises ``StaleState`` (changing nothing) when the row is elsewhere. Job transitions must also be
  allowed by ``models.can_transition``; a forbidden one raises ``StoreError``.
* The duplicate check is the store's: ``accept_submission(..., unique=True)`` refuses content
  already accepted on the route in the same transaction as the accept, so two intakes (tasks,
  or processes on one database) can never both accept it.
* Reads return immutable ``models`` values, never rows or cursors.
* No SQL (or any other storage detail) escapes the implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchd.errors import StoreError
from batchd.models import (
    Event,
    Job,
    JobState,
    Outcome,
    ResultCounts,
    Submission,
    SubmissionState,
)
from batchd.store.leases import Stage


class DuplicateContent(StoreError):
    """``accept_submission(..., unique=True)``: the same content is already accepted on the
    route as ``earlier`` (what ``find_duplicate`` returns); nothing was changed."""

    def __init__(self, earlier: Submission) -> None:
        super().__init__(f"submission {earlier.id} already holds this content")
        self.earlier = earlier


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event to append together with a state change."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One chunk of an accepted submission: requests ``[line_start, line_start + line_count)``."""

    index: int
    line_start: int
    line_count: int
    byte_count: int


@dataclass(frozen=True, slots=True)
class NewSubmission:
    """What intake knows when it claims a file (before reading it)."""

    route: str
    name: str
    provider: str
    endpoint: str
    model: str | None
    timeout_hours: int
    metadata: Mapping[str, str]
    inbox_path: str
    processing_path: str
    size_bytes: int
    file_dev: int
    file_ino: int


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # attempts exhausted: a dead letter
    DROPPED = "dropped"  # the endpoint was disabled (410) or removed from the configuration


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one webhook endpoint. ``payload`` holds the exact bytes to send."""

    event_id: str
    endpoint: str
    event_type: str
    payload: bytes
    state: str
    attempts: int
    next_attempt_at: float
    first_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    name: str
    disabled_at: float | None = None
    disabled_reason: str | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None
    consecutive_failures: int = 0
    pending: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class DuplicateJob:
    """A provider job carrying a job's tag that batchd did not adopt (issue 12): a second job
    for a chunk that already has one (``kept_provider_job_id``), or one whose tag points at no
    job of this store (``job_id`` None). Found by the tracker or the submitter's reconcile."""

    provider_job_id: str
    provider: str
    job_id: str | None
    submission_id: str | None
    kept_provider_job_id: str | None
    state: JobState  # as found
    raw_status: str | None
    cancelled: bool  # batchd cancelled it (False: it had already ended)
    requests_completed: int
    found_at: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Live figures for ``STATUS=`` and ``batchd jobs list``."""

    open_submissions: int = 0
    open_jobs: int = 0  # provider jobs not yet terminal (LOCAL + ACTIVE)
    pending_downloads: int = 0  # terminal jobs whose results are not yet collected
    undelivered_events: int = 0  # events not yet fanned out + pending deliveries


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows that ``prune`` removed (or, with ``apply=False``, would remove)."""

    submissions: int = 0
    jobs: int = 0
    events: int = 0
    deliveries: int = 0


class JobStore(Protocol):
    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Create or migrate the database. Refuses a database newer than the code."""
        ...

    async def close(self) -> None: ...

    async def integrity_check(self) -> list[str]:
        """Problems found (empty when the database is sound)."""
        ...

    async def stats(self) -> StoreStats: ...

    # ------------------------------------------------------------------ submissions
    async def begin_claim(self, new: NewSubmission, *, now: float) -> Submission:
        """Insert a CLAIMING submission (committed before the file is renamed)."""
        ...

    async def mark_claimed(self, submission_id: str, *, now: float) -> Submission:
        """CLAIMING -> CLAIMED (the file is in processing/)."""
        ...

    async def abandon_submission(self, submission_id: str, reason: str, *, now: float) -> None:
        """CLAIMING -> ABANDONED with a ``submission.abandoned`` event."""
        ...

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
        """CLAIMED -> ACTIVE; insert one NEW job per chunk (ids from ``models.new_id('job')``).
        ``unique``: raise ``DuplicateContent`` (changing nothing) when ``find_duplicate(route,
        sha256)`` finds another submission, checked in the accept's own transaction."""
        ...

    async def reject_submission(
        self, submission_id: str, reason: str, *, now: float, event: EventSpec
    ) -> None:
        """CLAIMING|CLAIMED -> REJECTED."""
        ...

    async def finish_submission(
        self,
        submission_id: str,
        outcome: Outcome,
        *,
        now: float,
        event: EventSpec,
        results: ResultCounts | None = None,
        results_dir: str | None = None,
    ) -> Submission:
        """ACTIVE -> DONE, once every job is terminal with results collected or unavailable.
        ``results`` (what the merged results hold) is kept on the submission; ``results_dir``,
        when given, is where its results ended up."""
        ...

    async def move_results(self, submission_id: str, results_dir: str) -> Submission:
        """Record that a DONE submission's results folder was moved (an older run of a name,
        moved aside for the newest). Raises ``StaleState`` for a submission not DONE."""
        ...

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        """Persist the user's intent: set ``cancel_requested_at`` on an ACTIVE (or CLAIMED)
        submission and ``cancel_requested`` on its non-terminal jobs. Idempotent: a second call
        changes nothing and appends no event."""
        ...

    async def get_submission(self, submission_id: str) -> Submission | None: ...

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        """Newest first. ``after``: only those listed after the submission with that id (a
        page cursor; an unknown id lists nothing)."""
        ...

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        """An earlier submission of the same route with the same content that is ACTIVE or
        DONE with every request answered (an outcome in ``models.ANSWERED``). After a run that
        left requests unanswered (failed, expired in part, cancelled in time) the same content
        may be dropped again: that is how users retry."""
        ...

    async def results_dir_taken(self, results_dir: str) -> bool:
        """Whether an ACTIVE submission will write its results to ``results_dir``."""
        ...

    # ------------------------------------------------------------------ jobs
    async def get_job(self, job_id: str) -> Job | None: ...

    async def find_job(self, any_id: str) -> Job | None:
        """By local id or by provider job id."""
        ...

    async def jobs_for_submission(self, submission_id: str) -> list[Job]:
        """Ordered by chunk index."""
        ...

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
        """Filtered jobs ordered by ``next_attempt_at`` then id. ``due_before`` keeps jobs with
        ``next_attempt_at <= due_before``; ``result_pending`` keeps terminal jobs whose results
        are PENDING."""
        ...

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
        """Take the due jobs of ``stage`` (``leases.in_stage``; ``next_attempt_at <= now``
        unless ``due_only`` is False: the tracker's sweep) that no other owner holds, ordered by
        ``next_attempt_at`` then id: each is returned held by ``owner`` for at least ``lease_s /
        2`` more (renewed to ``now + lease_s``, its version bumped, when it had less:
        ``leases.renewal_due``)."""
        ...

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
        """Compare-and-set ``expected -> new`` (``new == expected`` updates fields only).
        Every change bumps the job's version. With ``owner``: ``LeaseLost`` (changing nothing)
        when another owner holds the job.

        ``fields`` may set any non-key ``Job`` attribute (``counts`` as a ``RequestCounts``,
        ``errors`` as a tuple of dicts). Entering a TERMINAL state sets ``terminal_at`` and moves
        ``result_state`` from NONE to PENDING unless ``result_state`` is given."""
        ...

    async def reschedule_jobs(self, job_ids: Sequence[str], next_attempt_at: float) -> int:
        """Set ``next_attempt_at`` on many jobs in one transaction (the tracker's sweep), without
        touching their state or ``updated_at``. Unknown ids are skipped. Returns rows changed."""
        ...

    async def record_duplicate(self, dup: DuplicateJob, *, event: EventSpec) -> bool:
        """Record a duplicate provider job with its event (one transaction). A duplicate already
        recorded (same provider job id) changes nothing, appends no event and returns False."""
        ...

    async def duplicates(self, *, submission_id: str | None = None) -> list[DuplicateJob]:
        """Recorded duplicates (of one submission), oldest first."""
        ...

    # ------------------------------------------------------------------ outbox
    async def append_event(
        self,
        event: EventSpec,
        *,
        now: float,
        submission_id: str | None = None,
        job_id: str | None = None,
    ) -> Event:
        """Append a standalone event (one that no state change carries)."""
        ...

    async def unfanned_events(self, limit: int = 500) -> list[Event]:
        """Events not yet handed to the sinks, oldest first."""
        ...

    async def fan_out(self, event_id: str, endpoints: Sequence[str], *, now: float) -> None:
        """Mark the event handed to the sinks and create a PENDING delivery per endpoint.
        Idempotent: existing deliveries are left alone."""
        ...

    async def due_deliveries(
        self, *, now: float, limit: int = 500, endpoints: Sequence[str] | None = None
    ) -> list[Delivery]:
        """PENDING deliveries with ``next_attempt_at <= now``, oldest event first."""
        ...

    async def record_delivery(
        self,
        event_id: str,
        endpoint: str,
        *,
        now: float,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float | None,
        event: EventSpec | None = None,
    ) -> Delivery:
        """Record one attempt (``attempts`` + 1) and its result, updating the endpoint's health.
        ``event`` (for example ``webhook.dead_letter``) is appended in the same transaction."""
        ...

    async def get_event(self, event_id: str) -> Event | None: ...

    async def list_events(
        self,
        *,
        since: float | None = None,
        undelivered: bool = False,
        limit: int = 1000,
        newest_first: bool = False,
        after: str | None = None,
    ) -> list[Event]:
        """Oldest first (or newest first). ``undelivered``: not yet fanned out, or with a
        PENDING/DEAD delivery. ``after``: only those listed after the event with that id (a page
        cursor; an unknown id lists nothing)."""
        ...

    async def deliveries_for(self, event_id: str) -> list[Delivery]: ...

    async def replay(
        self, *, event_ids: Sequence[str] = (), since: float | None = None, now: float
    ) -> int:
        """Make events deliverable again: un-fan them out so that every current endpoint gets a
        fresh PENDING delivery (same event id, attempts reset). Returns how many events."""
        ...

    async def disable_endpoint(self, name: str, reason: str, *, now: float) -> None:
        """Disable (410): drop its PENDING deliveries and stop fanning out to it."""
        ...

    async def enable_endpoint(self, name: str) -> None: ...

    async def endpoint_health(self) -> list[EndpointHealth]: ...

    # ------------------------------------------------------------------ housekeeping
    async def prune(
        self, *, events_before: float | None, rows_before: float | None, apply: bool
    ) -> PruneCounts:
        """Remove finished history, in one transaction (``apply=False``: count only).

        Events created before ``events_before`` that were handed to the sinks and have no
        PENDING delivery go, with their deliveries (delivered, dead or dropped). Then
        submissions finished (DONE, REJECTED, ABANDONED) before ``rows_before`` that no
        remaining event refers to go, with their jobs. ``None``: keep that kind for ever."""
        ...

    async def compact(self, *, full: bool = False) -> int:
        """Give the space of deleted rows back to the file system; returns the bytes freed
        (an estimate). ``full`` rewrites the whole database (a long exclusive lock)."""
        ...
