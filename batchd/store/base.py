"""The ``JobStore`` seam: domain verbs over submissions, jobs and the event outbox.

Rules every implementation keeps (the behaviour suite in ``tests/integration/store`` checks them):

* Every write verb is one transaction. A verb that takes ``event=`` writes that event in the
  *same* transaction as the state change (transactional outbox): both happen or neither does.
* Job and submission transitions are compare-and-set: the verb names the state it expects and
  raises ``StaleState`` (changing nothing) when the row is elsewhere; every change of a job or
  a submission bumps its ``version``, and is written only where the version is still the one
  read. Job transitions must also be
  allowed by ``models.can_transition``; a forbidden one raises ``StoreError``.
* The duplicate check is the store's: ``accept_submission(..., unique=True)`` refuses content
  already accepted on the route in the same transaction as the accept, so two intakes (tasks,
  or processes on one database) can never both accept it.
* Reads return immutable ``models`` values, never rows or cursors.
* No SQL (or any other storage detail) escapes the implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from batchd.errors import StoreError
from batchd.models import (
    Job,
    JobState,
    Outcome,
    ResultCounts,
    Submission,
    SubmissionState,
)
from batchd.store.claim_verbs import ClaimVerbs
from batchd.store.outbox import Delivery, DeliveryState, EndpointHealth, EventSpec, OutboxVerbs

# The outbox's values are named here too: callers import every store value from this module.
__all__ = [
    "ChunkPlan",
    "ClaimVerbs",
    "Delivery",
    "DeliveryState",
    "DuplicateContent",
    "DuplicateJob",
    "EndpointHealth",
    "EventSpec",
    "JobStore",
    "NewSubmission",
    "OutboxVerbs",
    "PruneCounts",
    "StoreStats",
]


class DuplicateContent(StoreError):
    """``accept_submission(..., unique=True)``: the same content is already accepted on the
    route as ``earlier`` (what ``find_duplicate`` returns); nothing was changed."""

    def __init__(self, earlier: Submission) -> None:
        super().__init__(f"submission {earlier.id} already holds this content")
        self.earlier = earlier


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One chunk of an accepted submission: requests ``[line_start, line_start + line_count)``."""

    index: int
    line_start: int
    line_count: int
    byte_count: int


@dataclass(frozen=True, slots=True)
class NewSubmission:
    """What a source knows when it takes a submission (before reading it). ``origin``: where
    it came from, a JSON object whose ``"source"`` names the source (the drop folder's is
    ``folder_origin.FolderOrigin``: the host that saw the file, its paths and identity), kept
    on the submission and read back by that source only; None when the source keeps none."""

    route: str
    name: str
    provider: str
    endpoint: str
    model: str | None
    timeout_hours: int
    metadata: Mapping[str, str]
    size_bytes: int
    origin: Mapping[str, Any] | None = None


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


class JobStore(ClaimVerbs, OutboxVerbs, Protocol):
    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Create or migrate the database. Refuses a database newer than the code."""
        ...

    async def close(self) -> None: ...

    async def integrity_check(self) -> list[str]:
        """Problems found (empty when the database is sound)."""
        ...

    async def stats(self) -> StoreStats: ...

    async def deployment_id(self, proposed: str, *, now: float) -> str:
        """The deployment's id, tagged on every provider job (``batchd=<id>``) and shared by
        every instance on the store: the one stored, or ``proposed`` stored now when there is
        none yet (the first daemon to open the store; an existing install proposes its
        ``data_dir/instance-id``, so the tags on its jobs still match). One transaction: two
        daemons opening a new store together agree on one id."""
        ...

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
        owner: str | None = None,
    ) -> Submission:
        """ACTIVE -> DONE, once every job is terminal with results collected or unavailable.
        ``results`` (what the merged results hold) is kept on the submission; ``results_dir``,
        when given, is where its results ended up. With ``owner``: ``LeaseLost`` (changing
        nothing) when another owner holds the submission (``claim_submission``)."""
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

    async def record_duplicate(self, dup: DuplicateJob, *, event: EventSpec) -> bool:
        """Record a duplicate provider job with its event (one transaction). A duplicate already
        recorded (same provider job id) changes nothing, appends no event and returns False."""
        ...

    async def duplicates(self, *, submission_id: str | None = None) -> list[DuplicateJob]:
        """Recorded duplicates (of one submission), oldest first."""
        ...

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
