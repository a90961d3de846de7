"""Mistral wire formats, pure: status mapping, lenient parsing of jobs, files and result lines,
and the request encodings the official SDK uses (provider-apis.md 1.9).

The mapping from Mistral statuses to ``JobState`` lives here and nowhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from batchd.errors import ProviderPermanent, ProviderTransient
from batchd.models import JobState, RequestCounts
from batchd.providers.base import (
    FileRef,
    JobFilter,
    JobPage,
    JobSpec,
    ProviderJobError,
    ResultLine,
)
from batchd.providers.mistral_models import (
    MistralFile,
    MistralJob,
    MistralJobFilter,
    MistralJobSpec,
)

log = structlog.get_logger(__name__)

STATUS_TO_STATE: Final[Mapping[str, JobState]] = {
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "CANCELLATION_REQUESTED": JobState.CANCELLING,
    "SUCCESS": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEOUT_EXCEEDED": JobState.EXPIRED,
    "CANCELLED": JobState.CANCELLED,
}
STATE_TO_STATUSES: Final[Mapping[JobState, tuple[str, ...]]] = {
    state: tuple(s for s, st in STATUS_TO_STATE.items() if st is state)
    for state in set(STATUS_TO_STATE.values())
}
# Query names the jobs list sends itself; a metadata key equal to one would be ambiguous.
LIST_PARAMS: Final = frozenset(
    {
        "page",
        "page_size",
        "model",
        "agent_id",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    }
)


# ---------------------------------------------------------------------------- statuses


def state_of(status: str) -> JobState:
    """The neutral state of a Mistral status (case-insensitive); ``UNKNOWN`` otherwise."""
    return STATUS_TO_STATE.get(status.strip().upper(), JobState.UNKNOWN)


def statuses_for(states: Iterable[JobState]) -> list[str]:
    """Mistral statuses for neutral states, in the order given, without duplicates; a state
    Mistral has no status for (``UNKNOWN``) maps to nothing."""
    out: list[str] = []
    for state in states:
        out.extend(s for s in STATE_TO_STATUSES.get(state, ()) if s not in out)
    return out


# ---------------------------------------------------------------------------- leniency helpers


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return default


def _opt_int(value: Any) -> int | None:
    """A non-negative int, or None when absent or unreadable."""
    parsed = -1 if value is None else _int(value, default=-1)
    return parsed if parsed >= 0 else None


def _ts(value: Any) -> float | None:
    """Unix seconds (int or float) or an ISO-8601 string to float seconds; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _job_errors(value: Any) -> tuple[ProviderJobError, ...]:
    if not isinstance(value, list):
        return ()
    errors = []
    for item in value:
        if isinstance(item, dict):
            message = str(item.get("message") or item.get("detail") or json.dumps(item))
            errors.append(ProviderJobError(message, max(_int(item.get("count"), 1), 1)))
        elif item is not None:
            errors.append(ProviderJobError(str(item)))
    return tuple(errors)


def _outputs(value: Any) -> tuple[Mapping[str, Any], ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(item for item in value if isinstance(item, dict))


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ProviderTransient(f"malformed {what} in provider response")
    return data


# ---------------------------------------------------------------------------- jobs


def parse_job(data: Any) -> MistralJob:
    """A ``BatchJob`` object, leniently: unknown fields ignored, optional ones defaulted, an
    unknown status mapped to ``UNKNOWN`` with a ``provider.unknown_status`` warning."""
    job = _require_object(data, "batch job")
    raw_status = _opt_str(job.get("status")) or ""
    state = state_of(raw_status)
    if state is JobState.UNKNOWN:
        log.warning("provider.unknown_status", provider_job_id=job["id"], status=raw_status)
    files = job.get("input_files")
    return MistralJob(
        id=job["id"],
        state=state,
        raw_status=raw_status,
        endpoint=_opt_str(job.get("endpoint")) or "",
        model=_opt_str(job.get("model")),
        agent_id=_opt_str(job.get("agent_id")),
        metadata=_str_map(job.get("metadata")),
        counts=RequestCounts(
            total=_int(job.get("total_requests")),
            completed=_int(job.get("completed_requests")),
            succeeded=_int(job.get("succeeded_requests")),
            failed=_int(job.get("failed_requests")),
        ),
        input_files=tuple(str(f) for f in files) if isinstance(files, list) else (),
        output_file=_opt_str(job.get("output_file")) or None,
        error_file=_opt_str(job.get("error_file")) or None,
        errors=_job_errors(job.get("errors")),
        outputs=_outputs(job.get("outputs")),
        created_at=_ts(job.get("created_at")),
        started_at=_ts(job.get("started_at")),
        completed_at=_ts(job.get("completed_at")),
    )


def parse_job_page(data: Any, page: int, page_size: int) -> JobPage:
    """A ``ListBatchJobsResponse``; a missing ``total`` counts what this page proves exists."""
    if not isinstance(data, dict):
        raise ProviderTransient("malformed job list in provider response")
    items = data.get("data")
    jobs = tuple(parse_job(item) for item in items) if isinstance(items, list) else ()
    total = _opt_int(data.get("total"))
    return JobPage(
        jobs, total if total is not None else page * page_size + len(jobs), page, page_size
    )


def create_body(spec: JobSpec) -> dict[str, Any]:
    """The ``CreateBatchJobRequest`` JSON as the SDK sends it (unset fields omitted,
    ``timeout_hours`` always present)."""
    requests = spec.requests if isinstance(spec, MistralJobSpec) else None
    if bool(spec.input_files) == (requests is not None):
        raise ProviderPermanent("a batch job needs either input_files or inline requests")
    body: dict[str, Any] = {"endpoint": spec.endpoint}
    if spec.input_files:
        body["input_files"] = list(spec.input_files)
    if requests is not None:
        body["requests"] = [dict(r) for r in requests]
    if spec.model is not None:
        body["model"] = spec.model
    if isinstance(spec, MistralJobSpec) and spec.agent_id is not None:
        body["agent_id"] = spec.agent_id
    if spec.metadata:
        body["metadata"] = dict(spec.metadata)
    body["timeout_hours"] = spec.timeout_hours
    return body


def iso_utc(ts: float) -> str:
    """``created_after`` as the SDK writes it: ``2025-01-02T03:04:05Z`` (whole seconds, floored,
    so the filter never drops a job created within the same second)."""
    return datetime.fromtimestamp(int(ts // 1), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def jobs_query(filters: JobFilter) -> list[tuple[str, str]]:
    """Query pairs for ``GET /v1/batch/jobs`` in the SDK's order: metadata exploded into
    top-level pairs, ``status`` repeated, ``page``/``page_size``/``created_by_me``/``order_by``
    always sent."""
    clash = sorted(LIST_PARAMS & set(filters.metadata))
    if clash:
        raise ProviderPermanent(f"metadata key(s) {clash} collide with list query parameters")
    pairs = [("page", str(filters.page)), ("page_size", str(filters.page_size))]
    if filters.model is not None:
        pairs.append(("model", filters.model))
    mistral = filters if isinstance(filters, MistralJobFilter) else MistralJobFilter()
    if mistral.agent_id is not None:
        pairs.append(("agent_id", mistral.agent_id))
    pairs.extend((k, v) for k, v in filters.metadata.items())
    if filters.created_after is not None:
        pairs.append(("created_after", iso_utc(filters.created_after)))
    pairs.append(("created_by_me", _bool(mistral.created_by_me)))
    pairs.extend(("status", s) for s in statuses_for(filters.states))
    pairs.append(("order_by", filters.order_by))
    return pairs


# ---------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class FileQuery:
    """``GET /v1/files`` parameters (every one the API has)."""

    page: int = 0
    page_size: int = 100
    include_total: bool = True
    sample_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    search: str | None = None
    purpose: str | None = None
    mimetypes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FilePage:
    files: tuple[FileRef, ...]
    total: int | None
    page: int
    page_size: int


def files_query(query: FileQuery) -> list[tuple[str, str]]:
    """Query pairs for ``GET /v1/files`` in the SDK's order (lists repeated)."""
    pairs = [
        ("page", str(query.page)),
        ("page_size", str(query.page_size)),
        ("include_total", _bool(query.include_total)),
    ]
    pairs.extend(("sample_type", s) for s in query.sample_types)
    pairs.extend(("source", s) for s in query.sources)
    if query.search is not None:
        pairs.append(("search", query.search))
    if query.purpose is not None:
        pairs.append(("purpose", query.purpose))
    pairs.extend(("mimetypes", m) for m in query.mimetypes)
    return pairs


def parse_file(data: Any) -> MistralFile:
    """A file object (upload, retrieve or list item); ``bytes`` may be null in the docs."""
    item = _require_object(data, "file object")
    return MistralFile(
        id=item["id"],
        filename=_opt_str(item.get("filename")) or "",
        size_bytes=_int(item.get("bytes")),
        created_at=_ts(item.get("created_at")),
        purpose=_opt_str(item.get("purpose")),
        sample_type=_opt_str(item.get("sample_type")),
        source=_opt_str(item.get("source")),
        num_lines=_opt_int(item.get("num_lines")),
        mimetype=_opt_str(item.get("mimetype")),
        deleted=item.get("deleted") is True,
        visibility=_opt_str(item.get("visibility")),
        expires_at=_ts(item.get("expires_at")),
    )


def parse_file_page(data: Any, query: FileQuery) -> FilePage:
    if not isinstance(data, dict):
        raise ProviderTransient("malformed file list in provider response")
    items = data.get("data")
    files = tuple(parse_file(item) for item in items) if isinstance(items, list) else ()
    return FilePage(files, _opt_int(data.get("total")), query.page, query.page_size)


def parse_signed_url(data: Any) -> str:
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        raise ProviderTransient("malformed signed URL response")
    return url


# ---------------------------------------------------------------------------- paging


def next_page(page: int, page_size: int, received: int, total: int | None) -> int | None:
    """The page after ``page``, or None when the walk is over: an empty page, ``total``
    reached, or (with no total) a short page."""
    if received == 0:
        return None
    if total is not None:
        return page + 1 if (page + 1) * page_size < total else None
    return page + 1 if received >= page_size else None


def page_is_repeat(ids: Sequence[str], seen: set[str]) -> bool:
    """A non-empty page made only of ids already walked: the server ignores ``page``."""
    return bool(ids) and all(i in seen for i in ids)


# ---------------------------------------------------------------------------- result lines


def parse_result_line(raw: bytes) -> ResultLine:
    """One output/error line, leniently: ``error`` may be an object, a string or null; the
    response may be missing. Raises ``ProviderPermanent`` unless it is a JSON object with a
    ``custom_id``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProviderPermanent("result line is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProviderPermanent("result line is not a JSON object")
    custom_id = data.get("custom_id")
    if custom_id is None or isinstance(custom_id, dict | list) or custom_id == "":
        raise ProviderPermanent("result line has no custom_id")
    response = data.get("response")
    response = response if isinstance(response, dict) else {}
    status = response.get("status_code")
    return ResultLine(
        custom_id=str(custom_id),
        status_code=_opt_int(status),
        body=response.get("body"),
        error=data.get("error"),
    )
