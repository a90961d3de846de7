"""Pure rules every ``JobStore`` implementation shares: no I/O and no SQL here.

Each write verb reads the current value, asks a function below for the new value (these raise
``StaleState`` or ``StoreError`` before anything is written), then writes it. So the SQLite
store, the in-memory store and any later implementation decide exactly alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchd.clock import utc_iso
from batchd.errors import StaleState, StoreError
from batchd.models import (
    TERMINAL,
    Event,
    Job,
    JobState,
    Outcome,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
    can_transition,
    new_id,
)
from batchd.store import leases
from batchd.store.base import (
    ChunkPlan,
    Delivery,
    DeliveryState,
    EndpointHealth,
    EventSpec,
    NewSubmission,
)
from batchd.store.job_fields import checked_fields

DELIVERY_STATES = frozenset(
    {DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.DEAD, DeliveryState.DROPPED}
)
UNDELIVERED = frozenset({DeliveryState.PENDING, DeliveryState.DEAD})
CANCELLABLE = frozenset({SubmissionState.CLAIMED, SubmissionState.ACTIVE})
FINISHED = frozenset({SubmissionState.DONE, SubmissionState.REJECTED, SubmissionState.ABANDONED})
SETTLED_RESULTS = frozenset({ResultState.COLLECTED, ResultState.UNAVAILABLE})

# ---------------------------------------------------------------------------- JSON


def canonical_json(value: Any) -> str:
    """The one JSON text for ``value``: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        return json.dumps(
            value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"value is not canonical JSON: {exc}") from exc


def json_copy(value: Any) -> Any:
    """``value`` as it reads back from storage (tuples become lists, keys become strings)."""
    return json.loads(canonical_json(value))


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to store: the value, its data as canonical JSON, and the webhook body."""

    event: Event
    data_json: str
    payload: bytes


MAX_EVENT_STRING = 1000  # characters of any one string in an event's data (webhooks are thin)


def _capped(value: Any) -> Any:
    """``value`` with every string cut to ``MAX_EVENT_STRING`` characters (a provider's error
    message can be a whole HTML page)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_EVENT_STRING else value[: MAX_EVENT_STRING - 1] + "…"
    if isinstance(value, dict):
        return {k: _capped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_capped(v) for v in value]
    return value


def build_event(
    spec: EventSpec, *, now: float, submission_id: str | None = None, job_id: str | None = None
) -> NewEvent:
    if not isinstance(spec.type, str) or not spec.type:
        raise StoreError(f"event type must be a non-empty string, not {spec.type!r}")
    data_json = canonical_json(_capped(dict(spec.data)))
    data = json.loads(data_json)
    body = {"type": spec.type, "timestamp": utc_iso(now), "data": data}
    event = Event(new_id("evt", now), spec.type, now, data, submission_id, job_id)
    return NewEvent(event, data_json, canonical_json(body).encode())


# ---------------------------------------------------------------------------- submissions


def new_submission(new: NewSubmission, *, now: float) -> Submission:
    metadata = dict(new.metadata)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise StoreError("submission metadata must map strings to strings")
    return Submission(
        id=new_id("sub", now),
        route=new.route,
        name=new.name,
        state=SubmissionState.CLAIMING,
        provider=new.provider,
        endpoint=new.endpoint,
        model=new.model,
        timeout_hours=new.timeout_hours,
        metadata=metadata,
        size_bytes=new.size_bytes,
        origin=origin(new.origin),
        created_at=now,
    )


def origin(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A submission's origin as stored: None, or a JSON object naming its ``source``."""
    if value is None:
        return None
    copied = json_copy(dict(value))
    if not isinstance(copied.get("source"), str) or not copied["source"]:
        raise StoreError("a submission's origin must name its source (a non-empty string)")
    return dict(copied)


def expect_submission(sub: Submission, allowed: Iterable[SubmissionState]) -> None:
    states = frozenset(allowed)
    if sub.state not in states:
        expected = "|".join(sorted(s.value for s in states))
        raise StaleState(f"submission {sub.id}", expected, sub.state)


def claimed(sub: Submission) -> Submission:
    expect_submission(sub, {SubmissionState.CLAIMING})
    return replace(sub, state=SubmissionState.CLAIMED)


def abandoned(sub: Submission, reason: str, *, now: float) -> tuple[Submission, EventSpec]:
    expect_submission(sub, {SubmissionState.CLAIMING})
    data = {"submission_id": sub.id, "route": sub.route, "name": sub.name, "reason": reason}
    done = replace(sub, state=SubmissionState.ABANDONED, reason=reason, finished_at=now)
    return done, EventSpec("submission.abandoned", data)


def accepted(
    sub: Submission, *, sha256: str, line_count: int, results_dir: str, chunks: int, now: float
) -> Submission:
    expect_submission(sub, {SubmissionState.CLAIMED})
    return replace(
        sub,
        state=SubmissionState.ACTIVE,
        sha256=sha256,
        line_count=line_count,
        results_dir=results_dir,
        chunk_count=chunks,
        accepted_at=now,
    )


def rejected(sub: Submission, reason: str, *, now: float) -> Submission:
    expect_submission(sub, {SubmissionState.CLAIMING, SubmissionState.CLAIMED})
    return replace(sub, state=SubmissionState.REJECTED, reason=reason, finished_at=now)


def finished(
    sub: Submission,
    outcome: Outcome,
    jobs: Sequence[Job],
    *,
    now: float,
    results: ResultCounts | None = None,
    results_dir: str | None = None,
    owner: str | None = None,
) -> Submission:
    """ACTIVE -> DONE, refused (``StaleState``) while some job is not settled, and
    (``LeaseLost``) when ``owner`` is given and another owner holds the submission."""
    leases.check_owner(sub, owner, now)
    expect_submission(sub, {SubmissionState.ACTIVE})
    unsettled = [j.id for j in jobs if not settled(j)]
    if unsettled:
        raise StaleState(f"submission {sub.id}", "every job settled", f"{unsettled} unsettled")
    return replace(
        sub,
        state=SubmissionState.DONE,
        outcome=Outcome(outcome),
        finished_at=now,
        results=None if results is None else result_counts(results),
        results_dir=sub.results_dir if results_dir is None else results_dir,
    )


def results_moved(sub: Submission, results_dir: str) -> Submission:
    expect_submission(sub, {SubmissionState.DONE})
    if not isinstance(results_dir, str) or not results_dir:
        raise StoreError("results_dir must be a non-empty string")
    return replace(sub, results_dir=results_dir)


def result_counts(value: ResultCounts) -> ResultCounts:
    """``value`` checked (counts >= 0, usage maps names to integers) and copied."""
    numbers = (value.succeeded, value.failed, value.missing)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise StoreError(f"result counts must be integers >= 0, not {numbers}")
    usage = dict(value.usage)
    if not all(isinstance(k, str) and type(v) is int for k, v in usage.items()):
        raise StoreError("result usage must map strings to integers")
    return replace(value, usage=usage)


def cancel_requested(sub: Submission, *, now: float) -> Submission | None:
    """The submission with the cancel recorded, or None when it already was (idempotent)."""
    expect_submission(sub, CANCELLABLE)
    if sub.cancel_requested_at is not None:
        return None
    return replace(sub, cancel_requested_at=now)


def settled(job: Job) -> bool:
    return job.state in TERMINAL and job.result_state in SETTLED_RESULTS


# ---------------------------------------------------------------------------- jobs


def new_jobs(sub: Submission, chunks: Sequence[ChunkPlan], *, now: float) -> list[Job]:
    """One NEW job per chunk, ordered by chunk index."""
    indexes = [c.index for c in chunks]
    if len(set(indexes)) != len(indexes) or any(i < 0 for i in indexes):
        raise StoreError(f"submission {sub.id}: chunk indexes must be unique and >= 0")
    return [
        Job(
            id=new_id("job", now),
            submission_id=sub.id,
            chunk_index=c.index,
            provider=sub.provider,
            state=JobState.NEW,
            line_start=c.line_start,
            line_count=c.line_count,
            byte_count=c.byte_count,
            cancel_requested=sub.cancel_requested_at is not None,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        for c in sorted(chunks, key=lambda c: c.index)
    ]


def job_state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError as exc:
        raise StoreError(f"unknown job state {value!r}") from exc


def transitioned(
    job: Job,
    expected: JobState,
    new: JobState,
    *,
    now: float,
    fields: Mapping[str, Any],
    owner: str | None = None,
) -> Job:
    """The job after a compare-and-set ``expected -> new`` with ``fields`` applied (and its
    version bumped); ``LeaseLost`` when ``owner`` is given and another owner holds it."""
    changes = checked_fields(fields)
    leases.check_owner(job, owner, now)
    expected, new = job_state(expected), job_state(new)
    if job.state is not expected:
        raise StaleState(f"job {job.id}", expected, job.state)
    if new is not expected and not can_transition(expected, new):
        raise StoreError(f"job {job.id}: transition {expected} -> {new} is not allowed")
    entering_terminal = new in TERMINAL and expected not in TERMINAL
    if entering_terminal:
        changes.setdefault("terminal_at", now)
        if "result_state" not in changes and job.result_state is ResultState.NONE:
            changes["result_state"] = ResultState.PENDING
    return replace(job, **{"updated_at": now, **changes, "state": new, "version": job.version + 1})


# ---------------------------------------------------------------------------- outbox


def delivery_state(value: str) -> str:
    if value not in DELIVERY_STATES:
        raise StoreError(f"unknown delivery state {value!r}")
    return value


def attempted(
    current: Delivery,
    *,
    now: float,
    state: str,
    status: int | None,
    error: str | None,
    next_attempt_at: float | None,
) -> Delivery:
    """The delivery after one more attempt. ``next_attempt_at=None`` keeps the old value."""
    return replace(
        current,
        state=delivery_state(state),
        attempts=current.attempts + 1,
        next_attempt_at=current.next_attempt_at if next_attempt_at is None else next_attempt_at,
        first_attempt_at=now if current.first_attempt_at is None else current.first_attempt_at,
        last_status=status,
        last_error=error,
        delivered_at=now if state == DeliveryState.DELIVERED else current.delivered_at,
    )


def attempt_stands(current: Delivery, state: str) -> bool:
    """Whether an attempt's outcome is recorded. A delivery no longer pending (dropped by a 410
    or a removed endpoint while this attempt was in flight, or already ended) keeps its state,
    unless this attempt delivered it."""
    return current.state == DeliveryState.PENDING or state == DeliveryState.DELIVERED


def event_prunable(
    created_at: float, fanned_out_at: float | None, deliveries: Iterable[str], before: float | None
) -> bool:
    """An event ``prune`` removes: old enough, handed to the sinks, nothing left to deliver."""
    if before is None or created_at >= before or fanned_out_at is None:
        return False
    return all(state != DeliveryState.PENDING for state in deliveries)


def submission_prunable(sub: Submission, before: float | None) -> bool:
    """A submission ``prune`` may remove (if no event refers to it any more)."""
    if before is None or sub.state not in FINISHED:
        return False
    return (sub.finished_at or sub.created_at) < before


def health_after(current: EndpointHealth, *, delivered: bool, now: float) -> EndpointHealth:
    if delivered:
        return replace(current, last_success_at=now, consecutive_failures=0)
    return replace(
        current, last_failure_at=now, consecutive_failures=current.consecutive_failures + 1
    )
