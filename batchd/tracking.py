"""The tracker's pure decisions: when to poll a job again, how often to sweep a provider or
scan it for duplicates within its request budget, and what a snapshot changes on a job (its
fields and its event). No I/O here; ``batchd.tracker`` acts on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchd.models import Job, JobState, event_type_for
from batchd.providers.base import JobSnapshot
from batchd.store.base import EventSpec

LISTABLE: tuple[JobState, ...] = (JobState.PENDING, JobState.RUNNING, JobState.CANCELLING)
CANCELLABLE: tuple[JobState, ...] = (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)
MAX_WAIT_S = 5.0
CLOCK_SKEW_S = (
    300.0  # sweeps and duplicate scans list jobs created since the oldest open one, minus this
)


@dataclass(frozen=True, slots=True)
class TrackPolicy:
    concurrency: int = 8
    poll_initial_s: float = 5.0
    poll_max_s: float = 300.0
    list_threshold: int = 10
    rate_limit_slowdown_s: float = 30.0
    page_size: int = 100
    requests_per_second: float = 5.0  # a provider's own rate, when it has none in ``rates``
    rates: Mapping[str, float] = field(default_factory=dict)  # requests/s, per provider
    cancel_poll_s: float = 0.5  # how often a waiting tracker looks for new cancel intents
    duplicate_scan_s: float = 60.0


def next_interval(previous_s: float, moved: bool, policy: TrackPolicy) -> float:
    """Per-job backoff (pure): reset on movement, otherwise double up to the cap."""
    if moved or previous_s <= 0:
        return policy.poll_initial_s
    return min(policy.poll_max_s, previous_s * 2)


def oldest(jobs: Sequence[Job]) -> float | None:
    """Where a sweep's listing may stop: the oldest job's creation minus clock skew."""
    return min(j.created_at for j in jobs) - CLOCK_SKEW_S if jobs else None


def sweep_interval(open_jobs: int, policy: TrackPolicy, provider: str | None = None) -> float:
    """Seconds between sweeps of ``provider``: ``poll_initial_s``, or longer when the pages of
    one sweep would take more than half that provider's own request budget."""
    pages = max(1, math.ceil(open_jobs / policy.page_size))
    rate = policy.rates.get(provider or "", policy.requests_per_second)
    budget = rate * 0.5
    return max(policy.poll_initial_s, pages / budget if budget > 0 else 0.0)


def duplicate_scan_interval(pages: int, policy: TrackPolicy) -> float:
    """Seconds until the next duplicate scan, after one that listed ``pages`` pages:
    ``duplicate_scan_s``, or longer so that scans use at most a tenth of the request budget."""
    budget = policy.requests_per_second * 0.1
    return max(policy.duplicate_scan_s, pages / budget if budget > 0 else 0.0)


def has_moved(job: Job, snap: JobSnapshot) -> bool:
    return snap.state is not job.state or snap.counts != job.counts


def snapshot_fields(snap: JobSnapshot) -> dict[str, Any]:
    return {
        "raw_status": snap.raw_status,
        "counts": snap.counts,
        "output_file_id": snap.output_file,
        "error_file_id": snap.error_file,
        "errors": tuple({"message": e.message, "count": e.count} for e in snap.errors),
        "started_at": snap.started_at,
        "completed_at": snap.completed_at,
        "last_error": None,
    }


def state_event(job: Job, snap: JobSnapshot) -> EventSpec | None:
    event_type = event_type_for(snap.state)
    if event_type is None:
        return None
    return EventSpec(
        event_type,
        {
            "submission_id": job.submission_id,
            "job_id": job.id,
            "provider_job_id": snap.id,
            "state": snap.state.value,
            "raw_status": snap.raw_status,
            "counts": {
                "total": snap.counts.total,
                "completed": snap.counts.completed,
                "succeeded": snap.counts.succeeded,
                "failed": snap.counts.failed,
            },
            "errors": [{"message": e.message, "count": e.count} for e in snap.errors[:5]],
        },
    )
