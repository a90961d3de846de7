"""The daemon's store as seen through its API socket, for the commands a user who cannot read
the database runs (``jobs list|show|watch``, ``cancel``).

``ApiStore`` answers the few ``JobStore`` reads those commands make (and ``request_cancel``)
with ``batchd.client`` over the first ``unix:`` address of ``[api] listen``, rebuilding the
``models`` values from the API's JSON views; it sees what the API shows this user (their routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from batchd.client import ApiError, Client
from batchd.config import Settings
from batchd.errors import BatchdError
from batchd.models import (
    Job,
    JobState,
    Outcome,
    RequestCounts,
    ResultCounts,
    ResultState,
    Submission,
    SubmissionState,
)
from batchd.store.base import EventSpec

PAGE = 1000


def socket_of(settings: Settings) -> Path | None:
    paths = settings.api.unix_paths()
    return paths[0] if paths else None


def api_store_for(settings: Settings, problem: tuple[str, bool] | None) -> ApiStore | None:
    """The socket's view when this user may not read the database (``problem``: what
    ``_submit.unreadable`` found, denied) and the daemon serves a Unix socket (None: open the
    database as usual)."""
    sock = socket_of(settings)
    if problem is None or not problem[1] or sock is None or not sock.exists():
        return None
    return ApiStore(sock)


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def submission_of(view: dict[str, Any]) -> Submission:
    results = None
    if view.get("usage") is not None:
        results = ResultCounts(
            succeeded=view["succeeded"],
            failed=view["failed"],
            missing=view["missing"],
            usage=dict(view["usage"]),
        )
    return Submission(
        id=view["id"],
        route=view["route"],
        name=view["name"],
        state=SubmissionState(view["state"]),
        provider=view.get("provider", ""),
        endpoint=view.get("endpoint", ""),
        model=view.get("model"),
        timeout_hours=view.get("timeout_hours", 24),
        metadata=dict(view.get("metadata") or {}),
        outcome=Outcome(view["outcome"]) if view.get("outcome") else None,
        sha256=view.get("sha256"),
        line_count=view.get("requests") or 0,
        chunk_count=len(view.get("jobs") or []),
        results_dir=view.get("results_dir"),
        reason=view.get("reason"),
        cancel_requested_at=_ts(view.get("created")) if view.get("cancel_requested") else None,
        created_at=_ts(view.get("created")) or 0.0,
        accepted_at=_ts(view.get("accepted")),
        finished_at=_ts(view.get("finished")),
        results=results,
    )


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


def job_of(view: dict[str, Any]) -> Job:
    fields = {k: v for k, v in view.items() if k in Job.__dataclass_fields__}
    for key in _JOB_TIMES:
        fields[key] = _ts(view.get(key))
    for key in ("created_at", "updated_at", "next_attempt_at"):
        fields[key] = fields[key] or 0.0
    fields["state"] = JobState(view["state"])
    fields["result_state"] = ResultState(view["result_state"])
    fields["counts"] = RequestCounts(**view["counts"])
    fields["errors"] = tuple(view.get("errors") or ())
    return Job(**fields)


class ApiStore:
    """The reads of the ``jobs`` commands, over the API socket."""

    def __init__(self, socket: Path) -> None:
        self._client = Client(f"unix:{socket}")
        self._jobs: dict[str, list[Job]] = {}

    async def open(self) -> None:
        await self._client.__aenter__()

    async def close(self) -> None:
        await self._client.close()

    async def _detail(self, submission_id: str) -> Submission | None:
        try:
            view = await self._client.get(submission_id)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise BatchdError(f"the daemon's API: {exc}") from exc
        self._jobs[view["id"]] = [job_of(j) for j in view["jobs"]]
        return submission_of(view)

    async def get_submission(self, submission_id: str) -> Submission | None:
        return await self._detail(submission_id)

    async def jobs_for_submission(self, submission_id: str) -> list[Job]:
        if submission_id not in self._jobs:
            await self._detail(submission_id)
        return self._jobs.pop(submission_id, [])

    async def find_job(self, any_id: str) -> Job | None:
        return None  # the API finds submissions; a job id resolves by listing (resolve)

    async def find_duplicate(self, route: str, sha256: str) -> Submission | None:
        return None  # the daemon refuses a duplicate when it claims the file

    async def list_submissions(
        self,
        *,
        states: Sequence[SubmissionState] | None = None,
        route: str | None = None,
        limit: int = 1000,
        after: str | None = None,
    ) -> list[Submission]:
        found: list[Submission] = []
        cursor = after
        while len(found) < limit:
            page = await self._client.list(
                states=[s.value for s in states or []],
                route=route,
                limit=min(PAGE, limit - len(found)),
                cursor=cursor,
            )
            for row in page["items"]:
                sub = await self._detail(row["id"])
                if sub is not None:
                    found.append(sub)
            cursor = page["next_cursor"]
            if not cursor or not page["items"]:
                break
        return found

    async def request_cancel(
        self, submission_id: str, *, now: float, event: EventSpec
    ) -> Submission:
        try:
            await self._client.cancel(submission_id)
        except ApiError as exc:
            raise BatchdError(f"cannot cancel {submission_id}: {exc}") from exc
        sub = await self._detail(submission_id)
        assert sub is not None
        return sub
