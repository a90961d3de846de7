"""Read models for the ``jobs`` commands: rows and descriptions built from the store."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from batchd.clock import utc_iso
from batchd.errors import BatchdError
from batchd.models import Job, JobState, Submission, SubmissionState
from batchd.store.base import EventSpec, JobStore


def _iso(ts: float | None) -> str | None:
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
        "job_states": sorted({j.state.value for j in jobs}),
        **progress(jobs),
        **results(sub),
        "cancel_requested": sub.cancel_requested_at is not None,
        "created": _iso(sub.created_at),
        "finished": _iso(sub.finished_at),
        "results_dir": sub.results_dir,
        "reason": sub.reason,
    }


async def list_rows(store: JobStore, state: str | None, limit: int) -> list[dict[str, Any]]:
    sub_states = job_state = None
    if state:
        if state in {s.value for s in SubmissionState}:
            sub_states = [SubmissionState(state)]
        elif state in {s.value for s in JobState}:
            job_state = JobState(state)
        else:
            raise BatchdError(f"unknown state {state!r}")
    rows = []
    for sub in await store.list_submissions(states=sub_states, limit=limit):
        jobs = await store.jobs_for_submission(sub.id)
        if job_state is None or any(j.state is job_state for j in jobs):
            rows.append(submission_row(sub, jobs))
    return rows


def job_view(job: Job) -> dict[str, Any]:
    view = asdict(job)
    view["state"] = job.state.value
    view["result_state"] = job.result_state.value
    for key in (
        "created_at",
        "updated_at",
        "provider_created_at",
        "started_at",
        "completed_at",
        "terminal_at",
        "collected_at",
        "next_attempt_at",
    ):
        view[key] = _iso(view[key])
    return view


async def describe(store: JobStore, any_id: str) -> dict[str, Any] | None:
    sub = await store.get_submission(any_id)
    job = None if sub else await store.find_job(any_id)
    if job is not None:
        sub = await store.get_submission(job.submission_id)
    if sub is None:
        return None
    jobs = await store.jobs_for_submission(sub.id)
    view = submission_row(sub, jobs)
    view.update(
        provider=sub.provider,
        endpoint=sub.endpoint,
        model=sub.model,
        timeout_hours=sub.timeout_hours,
        metadata=sub.metadata,
        sha256=sub.sha256,
        accepted=_iso(sub.accepted_at),
        jobs=[job_view(j) for j in jobs if job is None or j.id == job.id],
    )
    return view


async def request_cancel(store: JobStore, any_id: str) -> Submission:
    sub = await store.get_submission(any_id)
    if sub is None:
        job = await store.find_job(any_id)
        sub = await store.get_submission(job.submission_id) if job else None
    if sub is None:
        raise BatchdError(f"no submission or job with id {any_id}")
    if sub.state not in {SubmissionState.CLAIMED, SubmissionState.ACTIVE}:
        raise BatchdError(f"submission {sub.id} is {sub.state.value}: nothing to cancel")
    import time

    return await store.request_cancel(
        sub.id,
        now=time.time(),
        event=EventSpec(
            "submission.cancel_requested",
            {"submission_id": sub.id, "route": sub.route, "name": sub.name},
        ),
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=27)  # ids are for copying: never cut them
    for column in ("name", "route", "state", "progress", "failed", "jobs", "created"):
        table.add_column(column)
    for row in rows:
        state = row["outcome"] or row["state"]
        if row["cancel_requested"] and row["state"] == "active":
            state = "cancelling"
        done = f"{row['completed']}/{row['requests']}" if row["requests"] else "-"
        table.add_row(
            row["id"],
            row["name"],
            row["route"],
            state,
            done,
            str(row["failed"]),
            str(row["jobs"]),
            row["created"] or "",
        )
    Console().print(table)


def print_description(view: dict[str, Any]) -> None:
    console = Console()
    for key in (
        "id",
        "name",
        "route",
        "state",
        "outcome",
        "provider",
        "endpoint",
        "model",
        "requests",
        "completed",
        "succeeded",
        "failed",
        "missing",
        "usage",
        "created",
        "accepted",
        "finished",
        "results_dir",
        "reason",
    ):
        if view.get(key) is not None:
            console.print(f"[bold]{key:>12}[/bold]  {view[key]}")
    for job in view["jobs"]:
        console.print(
            f"  job {job['id']} chunk {job['chunk_index']}: {job['state']} "
            f"({job['raw_status'] or '-'}), provider id {job['provider_job_id'] or '-'}, "
            f"results {job['result_state']}"
            + (f", last error: {job['last_error']}" if job["last_error"] else "")
        )
