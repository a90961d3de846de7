"""Read models for the ``jobs`` commands: rows and descriptions built from the store."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from rich.markup import escape

from batchd.cli import _output
from batchd.cli._output import cell, console, print_rows
from batchd.cli._paging import Page, check_cursor, collect
from batchd.errors import BatchdError, UsageError
from batchd.models import Job, JobState, Outcome, Submission, SubmissionState
from batchd.store.base import EventSpec, JobStore
from batchd.views import job_view, progress, results, submission_detail, submission_row

__all__ = ["job_view", "progress", "results", "submission_row"]


# Outcomes that are not also job states: ``--state partial`` lists what the state column shows.
OUTCOME_FILTERS = (Outcome.COMPLETED_WITH_ERRORS, Outcome.PARTIAL)

Filter = tuple[list[SubmissionState] | None, JobState | None, Outcome | None]


def state_filter(state: str | None) -> Filter:
    """``--state``: a submission state, a job state, or an outcome that is only an outcome
    (``completed_with_errors``, ``partial``); a usage error lists the valid ones."""
    if not state:
        return None, None, None
    if state in {s.value for s in SubmissionState}:
        return [SubmissionState(state)], None, None
    if state in {s.value for s in JobState}:
        return None, JobState(state), None
    if state in {o.value for o in OUTCOME_FILTERS}:
        return [SubmissionState.DONE], None, Outcome(state)
    subs = ", ".join(s.value for s in SubmissionState)
    jobs = ", ".join(s.value for s in JobState)
    outcomes = ", ".join(o.value for o in OUTCOME_FILTERS)
    raise UsageError(
        f"--state {state!r}: not a state; submission states: {subs}; job states: {jobs}; "
        f"outcomes: {outcomes}"
    )


async def list_page(
    store: JobStore, state: str | None, limit: int | None, cursor: str | None
) -> Page[Submission]:
    """Submissions newest first (a job state keeps those with a job in it, an outcome those
    that ended so), cut at ``limit``."""
    sub_states, job_state, outcome = state_filter(state)
    await check_cursor(cursor, store.get_submission)

    async def fetch(after: str | None, n: int) -> list[Submission]:
        return await store.list_submissions(states=sub_states, limit=n, after=after)

    async def convert(sub: Submission) -> dict[str, Any] | None:
        if outcome is not None and sub.outcome is not outcome:
            return None
        jobs = await store.jobs_for_submission(sub.id)
        if job_state is None or any(j.state is job_state for j in jobs):
            return submission_row(sub, jobs)
        return None

    return await collect(fetch, convert, limit=limit, cursor=cursor)


async def resolve(store: JobStore, ref: str) -> tuple[Submission, Job | None] | None:
    """A submission from its id, one of its jobs' ids (local or provider), or its file name
    (the newest submission of that name; a path is taken by its last part)."""
    sub = await store.get_submission(ref)
    if sub is not None:
        return sub, None
    job = await store.find_job(ref)
    if job is not None:
        found = await store.get_submission(job.submission_id)
        return (found, job) if found else None
    named = await find_by_name(store, PurePath(ref).name)
    return (named, None) if named else None


async def find_by_name(store: JobStore, name: str) -> Submission | None:
    after = None
    while True:
        page = await store.list_submissions(limit=500, after=after)
        for sub in page:
            if sub.name == name:
                return sub
        if len(page) < 500:
            return None
        after = page[-1].id


async def describe(store: JobStore, ref: str) -> dict[str, Any] | None:
    found = await resolve(store, ref)
    if found is None:
        return None
    sub, job = found
    jobs = await store.jobs_for_submission(sub.id)
    return submission_detail(sub, jobs, [j for j in jobs if job is None or j.id == job.id])


async def open_by_name(store: JobStore, name: str) -> list[Submission]:
    """The submissions of that file name still to finish (several: re-drops, other routes)."""
    return [
        sub
        for sub in await store.list_submissions(
            states=[SubmissionState.CLAIMED, SubmissionState.ACTIVE], limit=1_000_000
        )
        if sub.name == name
    ]


async def request_cancel(store: JobStore, ref: str) -> Submission:
    """By file name: the one submission of that name still running (not merely the newest,
    which may have finished while an earlier drop of the same name runs on)."""
    found = await resolve(store, ref)
    if found is None:
        raise BatchdError(f"no submission, job or file named {ref}")
    sub = found[0]
    if found[1] is None and sub.id != ref:  # found by its file name
        running = await open_by_name(store, PurePath(ref).name)
        if len(running) > 1:
            listed = ", ".join(f"{s.id} (route {s.route})" for s in running)
            raise BatchdError(
                f"several submissions named {sub.name} are open: {listed}; cancel one by its id"
            )
        if running:
            sub = running[0]
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


LIST_COLUMNS = ("id", "name", "route", "state", "progress", "failed", "jobs", "created")


def display_state(row: dict[str, Any]) -> str:
    if row["cancel_requested"] and row["state"] == "active":
        return "cancelling"
    return str(row["outcome"] or row["state"])


def print_table(rows: list[dict[str, Any]], *, quiet: bool = False) -> None:
    shown = [
        {
            **row,
            "state": display_state(row),
            "progress": f"{row['completed']}/{row['requests']}" if row["requests"] else "-",
        }
        for row in rows
    ]
    print_rows(shown, LIST_COLUMNS, quiet=quiet)


DESCRIPTION_KEYS = (
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
)


def _value(value: Any, *, one_line: bool) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={cell(v)}" for k, v in value.items())  # usage: tokens
    return cell(value) if one_line else str(value)


def print_description(view: dict[str, Any]) -> None:
    """``key  value`` lines (a terminal: aligned and styled, long values folded) or, piped,
    ``key<TAB>value`` lines with every value in full on its line, for grep and cut."""
    piped = not _output.is_terminal()
    shown = [
        (key, _value(view[key], one_line=piped))
        for key in DESCRIPTION_KEYS
        if view.get(key) is not None
    ]
    lines = []
    for job in view["jobs"]:
        line = (
            f"  job {job['id']} chunk {job['chunk_index']}: {job['state']} "
            f"({job['raw_status'] or '-'}), provider id {job['provider_job_id'] or '-'}, "
            f"results {job['result_state']}"
        )
        error = f", last error: {cell(job['last_error'])}" if job["last_error"] else ""
        lines.append(line + error)
    if piped:
        print("\n".join([f"{key}\t{value}" for key, value in shown] + lines))
        return
    out = console()
    for key, value in shown:
        out.print(f"[bold]{key:>12}[/bold]  {escape(value)}")
    for line in lines:
        out.print(line, markup=False)
