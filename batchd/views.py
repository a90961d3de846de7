"""JSON views of submissions and jobs, shared by ``batchd jobs`` and the HTTP API (pure)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from batchd.clock import utc_iso
from batchd.models import Job, Submission

_JOB_TIMES = (
    "created_at",
    "updated_at",
    "provider_created_at",
    "started_at",
    "completed_at",
    "terminal_at",
    "collected_at",
    "next_attempt_at",
    "lease_until",
)


def iso(ts: float | None) -> str | None:
    return utc_iso(ts) if ts else None


def progress(jobs: list[Job]) -> dict[str, int]:
    """Requests done so far over all of a submission's jobs (guards total == 0)."""
    requests = sum(j.line_count for j in jobs)
    completed = sum(min(j.counts.completed, j.line_count) for j in jobs)
    return {
        "requests": requests,
        "completed": completed,
        "succeeded": sum(j.counts.succeeded for j in jobs),
        "failed": sum(j.counts.failed for j in jobs),
    }


def results(sub: Submission) -> dict[str, Any]:
    """What a finished submission's results hold (``None``s while it runs, or for a run finished
    by an older batchd): the figures in its summary.json."""
    found = sub.results
    if found is None:
        return {"missing": None, "usage": None}
    return {
        # answered in the results, not what the provider's counters said (a lost job's
        # counters may show progress its results never delivered)
        "completed": found.succeeded + found.failed,
        "succeeded": found.succeeded,
        "failed": found.failed,
        "missing": found.missing,
        "usage": dict(found.usage),
    }


def submission_row(sub: Submission, jobs: list[Job]) -> dict[str, Any]:
    return {
        "id": sub.id,
        "name": sub.name,
        "route": sub.route,
        "state": sub.state.value,
        "outcome": sub.outcome.value if sub.outcome else None,
        "jobs": len(jobs),
        "provider_job_ids": [j.provider_job_id for j in jobs],
        "job_states": sorted({j.state.value for j in jobs}),
        **progress(jobs),
        **results(sub),
        "cancel_requested": sub.cancel_requested_at is not None,
        "created": iso(sub.created_at),
        "finished": iso(sub.finished_at),
        "results_dir": sub.results_dir,
        "reason": sub.reason,
    }


def job_view(job: Job) -> dict[str, Any]:
    view = asdict(job)
    view["state"] = job.state.value
    view["result_state"] = job.result_state.value
    for key in _JOB_TIMES:
        view[key] = iso(view[key])
    return view


def submission_detail(
    sub: Submission, jobs: list[Job], shown: list[Job] | None = None
) -> dict[str, Any]:
    """``submission_row`` plus the submission's settings and its jobs (``shown``: only those,
    the figures still over every job)."""
    view = submission_row(sub, jobs)
    view.update(
        provider=sub.provider,
        endpoint=sub.endpoint,
        model=sub.model,
        timeout_hours=sub.timeout_hours,
        metadata=sub.metadata,
        sha256=sub.sha256,
        accepted=iso(sub.accepted_at),
        jobs=[job_view(j) for j in (jobs if shown is None else shown)],
    )
    return view
