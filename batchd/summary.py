"""``summary.json`` and the ``results.ready`` event of a finished submission (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchd.clock import utc_iso
from batchd.models import Job, Outcome, Submission, cancel_too_late
from batchd.results import Tally
from batchd.store.base import DuplicateJob, EventSpec


def _iso(ts: float | None) -> str | None:
    return utc_iso(ts) if ts else None


def _job_entry(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "chunk": job.chunk_index,
        "requests": job.line_count,
        "provider_job_id": job.provider_job_id,
        "state": job.state.value,
        "raw_status": job.raw_status,
        "results": job.result_state.value,
        "counts": {
            "total": job.counts.total,
            "completed": job.counts.completed,
            "succeeded": job.counts.succeeded,
            "failed": job.counts.failed,
        },
        "errors": list(job.errors),
        "problem": job.last_error,
        "timings": {
            "created": _iso(job.created_at),
            "ended": _iso(job.terminal_at),
            "collected": _iso(job.collected_at),
        },
        "provider_timings": {
            "created": _iso(job.provider_created_at),
            "started": _iso(job.started_at),
            "completed": _iso(job.completed_at),
            "run_s": _seconds(job.started_at, job.completed_at),
        },
    }


def duplicate_entry(dup: DuplicateJob) -> dict[str, Any]:
    """A provider job that was a second job for a chunk (issue 12): cancelled when noticed, or
    reported here when it had already ended; its results are never merged."""
    return {
        "job_id": dup.job_id,
        "provider_job_id": dup.provider_job_id,
        "kept_provider_job_id": dup.kept_provider_job_id,
        "state": dup.state.value,
        "raw_status": dup.raw_status,
        "cancelled": dup.cancelled,
        "requests_completed": dup.requests_completed,
        "found": _iso(dup.found_at),
    }


def _seconds(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start and end else None


def build_summary(
    sub: Submission,
    jobs: list[Job],
    tally: Tally,
    outcome: Outcome,
    results_dir: Path,
    *,
    now: float,
    duplicates: Sequence[DuplicateJob] = (),
) -> dict[str, Any]:
    """Everything about a finished submission. ``timings`` are batchd's own clock; each job also
    lists the times its provider reported (the provider's clock, which may differ)."""
    terminal = [j.terminal_at for j in jobs if j.terminal_at]
    return {
        "submission_id": sub.id,
        "name": sub.name,
        "route": sub.route,
        "provider": sub.provider,
        "endpoint": sub.endpoint,
        "model": sub.model,
        "outcome": outcome.value,
        "cancelled": outcome is Outcome.CANCELLED,
        **_cancel(sub, tally),
        "sha256": sub.sha256,
        "counts": {
            "requests": tally.requests,
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "missing": tally.missing,
        },
        "usage": dict(sorted(tally.usage.items())),
        "top_errors": [{"message": m, "count": c} for m, c in tally.error_messages.most_common(5)],
        "timings": {
            "dropped": _iso(sub.created_at),
            "accepted": _iso(sub.accepted_at),
            "last_job_ended": _iso(max(terminal)) if terminal else None,
            "finished": _iso(now),
            "processing_s": _seconds(sub.accepted_at, max(terminal) if terminal else None),
            "collecting_s": _seconds(max(terminal) if terminal else None, now),
            "total_s": _seconds(sub.created_at, now),
        },
        "files": {
            "input": str(results_dir / "input.jsonl"),
            "results": str(results_dir / "results.jsonl"),
            "errors": str(results_dir / "errors.jsonl"),
        },
        "jobs": [_job_entry(j) for j in jobs],
        "duplicate_jobs": [duplicate_entry(d) for d in duplicates],
    }


def _cancel(sub: Submission, tally: Tally) -> dict[str, Any]:
    """Whether a cancel was requested, and whether it came too late (every request had been
    answered: the outcome then says how they were answered, not ``cancelled``)."""
    requested = sub.cancel_requested_at is not None
    return {
        "cancel_requested": requested,
        "cancel_too_late": cancel_too_late(tally.counts(), cancel_requested=requested),
    }


def dump_summary(summary: dict[str, Any]) -> bytes:
    return json.dumps(summary, indent=2, ensure_ascii=False).encode() + b"\n"


def ready_event(
    sub: Submission, jobs: list[Job], tally: Tally, outcome: Outcome, results_dir: Path
) -> EventSpec:
    """Thin: ids, counts, where the results are and the commonest errors; never results."""
    return EventSpec(
        "results.ready",
        {
            "submission_id": sub.id,
            "route": sub.route,
            "name": sub.name,
            "outcome": outcome.value,
            **_cancel(sub, tally),
            "results_dir": str(results_dir),
            "counts": {
                "requests": tally.requests,
                "succeeded": tally.succeeded,
                "failed": tally.failed,
                "missing": tally.missing,
            },
            "usage": dict(sorted(tally.usage.items())),
            "jobs": [
                {"job_id": j.id, "provider_job_id": j.provider_job_id, "state": j.state.value}
                for j in jobs
            ],
            "top_errors": [
                {"message": m, "count": c} for m, c in tally.error_messages.most_common(3)
            ],
        },
    )
