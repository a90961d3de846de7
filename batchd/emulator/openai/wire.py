"""OpenAI's shapes on the wire: the error envelope, the ``Batch`` and ``FileObject`` objects and
the cursor page (reference 1.1-1.5).

Errors are ``{"error":{"message","type","param","code"}}`` (the SDK reads ``body["error"]``);
every response carries an ``x-request-id``. Timestamps are unix seconds (ints).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from batchd.emulator.files import FileRecord
from batchd.emulator.lifecycle import JobRecord, counters, status
from batchd.emulator.validation import JobStatus
from batchd.emulator.wire import ApiError

COMPLETION_WINDOW = "24h"
WINDOW_S = 24 * 3600
ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)
_STATUS = {
    JobStatus.QUEUED: "validating",
    JobStatus.RUNNING: "in_progress",
    JobStatus.CANCELLATION_REQUESTED: "cancelling",
    JobStatus.SUCCESS: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT_EXCEEDED: "expired",
    JobStatus.CANCELLED: "cancelled",
}
UNPROCESSED_ENDS = frozenset({JobStatus.TIMEOUT_EXCEEDED, JobStatus.CANCELLED})


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def error_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def api_error(
    status_: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    type_: str = "invalid_request_error",
) -> ApiError:
    return ApiError(status_, error_body(message, type_=type_, param=param, code=code))


def not_found(kind: str, ident: str) -> ApiError:
    return api_error(404, f"No {kind} found with id '{ident}'.")


# ---------------------------------------------------------------------------- files


def file_to_wire(record: FileRecord) -> dict[str, Any]:
    """A ``FileObject``: ``status`` and ``purpose`` are required by the SDK (trap 3)."""
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.size_bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": record.expires_at,
    }


# ---------------------------------------------------------------------------- batches


def batch_status(job: JobRecord, t: float) -> str:
    """The OpenAI status at emulated time ``t``: ``finalizing`` once a successful batch has
    processed everything and its files are being written."""
    current = status(job)
    if current is JobStatus.RUNNING and _finalizing(job, t):
        return "finalizing"
    return _STATUS[current]


def _finalizing(job: JobRecord, t: float) -> bool:
    return job.end is not None and job.end.kind is JobStatus.SUCCESS and t >= job.end.at


def request_counts(job: JobRecord, t: float) -> dict[str, int]:
    """``completed`` counts successes (OpenAI's meaning); once an expired or cancelled batch
    has ended, the requests it never ran count as failed (they have ``batch_expired`` /
    ``batch_cancelled`` lines in the error file)."""
    mistral = counters(job, t)
    total = mistral["total_requests"]
    failed = mistral["failed_requests"]
    if job.ready and job.end is not None and job.end.kind in UNPROCESSED_ENDS:
        failed += total - mistral["completed_requests"]
    return {"total": total, "completed": mistral["succeeded_requests"], "failed": failed}


def _at(value: float | None) -> int | None:
    return None if value is None else int(value)


def _ended_at(job: JobRecord, kind: JobStatus) -> int | None:
    ended = job.ready and job.end is not None and job.end.kind is kind
    return _at(job.completed_at) if ended else None


def batch_to_wire(
    job: JobRecord, t: float, input_file_id: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``Batch`` object at emulated time ``t`` (``usage`` once it has ended)."""
    errors = {"object": "list", "data": list(job.errors)} if job.errors else None
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "model": job.model,
        "errors": errors,
        "input_file_id": input_file_id,
        "completion_window": COMPLETION_WINDOW,
        "status": batch_status(job, t),
        "output_file_id": job.output_file,
        "error_file_id": job.error_file,
        "created_at": int(job.created_at),
        "in_progress_at": _at(job.started_at),
        "expires_at": int(job.created_at) + WINDOW_S,
        "finalizing_at": _finalizing_at(job, t),
        "completed_at": _ended_at(job, JobStatus.SUCCESS),
        "failed_at": _ended_at(job, JobStatus.FAILED),
        "expired_at": _ended_at(job, JobStatus.TIMEOUT_EXCEEDED),
        "cancelling_at": _at(job.cancel_at),
        "cancelled_at": _ended_at(job, JobStatus.CANCELLED),
        "request_counts": request_counts(job, t),
        "usage": usage if job.ready else None,
        "metadata": job.metadata,
    }


def _finalizing_at(job: JobRecord, t: float) -> int | None:
    ok = job.end is not None and job.end.kind is JobStatus.SUCCESS
    return (
        _at(job.end.at) if job.end is not None and ok and (job.ready or t >= job.end.at) else None
    )


# ---------------------------------------------------------------------------- pages


def cursor_page(data: Sequence[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The list envelope; ``has_more`` is always sent (trap 4)."""
    return {
        "object": "list",
        "data": list(data),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def after_cursor(ids: Sequence[str], after: str | None, limit: int) -> tuple[int, int, bool]:
    """``(start, stop, has_more)`` of the page after ``after`` (exclusive: strictly the items
    that follow it; an unknown cursor gives an empty page)."""
    start = 0
    if after is not None:
        try:
            start = ids.index(after) + 1
        except ValueError:
            return 0, 0, False
    stop = min(start + limit, len(ids))
    return start, stop, stop < len(ids)
