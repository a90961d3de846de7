"""OpenAI wire formats, pure: the status map, lenient parsing of batches, files, cursor pages and
result lines, the create body and the input line encoding (reference: provider-apis-openai-
anthropic.md, section 1).

The mapping from OpenAI statuses to ``JobState`` lives here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from batchd.errors import ProviderPermanent, ProviderTransient
from batchd.models import JobState, RequestCounts
from batchd.providers.base import FileRef, JobSnapshot, JobSpec, ProviderJobError, ResultLine
from batchd.providers.mistral_wire import _int, _opt_int, _opt_str, _str_map, _ts

log = structlog.get_logger(__name__)

STATUS_TO_STATE: Final[Mapping[str, JobState]] = {
    "validating": JobState.PENDING,
    "in_progress": JobState.RUNNING,
    "finalizing": JobState.RUNNING,
    "cancelling": JobState.CANCELLING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "expired": JobState.EXPIRED,
    "cancelled": JobState.CANCELLED,
}
ENDPOINTS: Final = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
)
COMPLETION_WINDOW: Final = "24h"
# A batch failed for this can be created again later: the organisation's queue was full.
RETRY_LATER_CODES: Final = frozenset({"token_limit_exceeded"})


@dataclass(frozen=True, slots=True)
class OpenAIJob(JobSnapshot):
    """A batch as OpenAI reports it: the neutral snapshot plus its error codes (``errors.data
    [].code``) and token usage."""

    error_codes: tuple[str, ...] = ()
    usage: Mapping[str, Any] | None = None

    @property
    def retry_later(self) -> bool:
        """Failed only because the enqueued-token limit was reached (``token_limit_exceeded``):
        the same requests can be submitted again once other batches have ended."""
        return bool(self.error_codes) and set(self.error_codes) <= RETRY_LATER_CODES


@dataclass(frozen=True, slots=True)
class CursorPage:
    """One page of a cursor list: ``has_more`` and the cursor for the next (the last id)."""

    items: tuple[Any, ...]
    has_more: bool

    @property
    def next_after(self) -> str | None:
        return self.items[-1].id if self.items and self.has_more else None


def state_of(status: str) -> JobState:
    """The neutral state of an OpenAI status (case-insensitive); ``UNKNOWN`` otherwise."""
    return STATUS_TO_STATE.get(status.strip().lower(), JobState.UNKNOWN)


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ProviderTransient(f"malformed {what} in provider response")
    return data


def _errors(value: Any) -> tuple[tuple[ProviderJobError, ...], tuple[str, ...]]:
    """``errors: {"object":"list","data":[{code,line,message,param}]}`` as job errors (the
    code and line in each message) and the codes."""
    items = value.get("data") if isinstance(value, dict) else None
    if not isinstance(items, list):
        return (), ()
    errors, codes = [], []
    for item in items:
        if not isinstance(item, dict):
            continue
        code = _opt_str(item.get("code")) or "error"
        message = _opt_str(item.get("message")) or code
        line = _opt_int(item.get("line"))
        where = f" (line {line})" if line is not None else ""
        errors.append(ProviderJobError(f"{code}: {message}{where}"))
        codes.append(code)
    return tuple(errors), tuple(codes)


def _counts(value: Any) -> RequestCounts:
    """``request_counts``: OpenAI's ``completed`` counts successes only."""
    data = value if isinstance(value, dict) else {}
    succeeded, failed = _int(data.get("completed")), _int(data.get("failed"))
    return RequestCounts(
        total=_int(data.get("total")),
        completed=succeeded + failed,
        succeeded=succeeded,
        failed=failed,
    )


def parse_batch(data: Any) -> OpenAIJob:
    """A ``Batch`` object, leniently: unknown fields ignored, optional ones defaulted, an
    unknown status mapped to ``UNKNOWN`` with a ``provider.unknown_status`` warning."""
    batch = _require_object(data, "batch")
    raw_status = _opt_str(batch.get("status")) or ""
    state = state_of(raw_status)
    if state is JobState.UNKNOWN:
        log.warning("provider.unknown_status", provider_job_id=batch["id"], status=raw_status)
    errors, codes = _errors(batch.get("errors"))
    input_file = _opt_str(batch.get("input_file_id"))
    ended = [_ts(batch.get(k)) for k in ("completed_at", "failed_at", "expired_at", "cancelled_at")]
    usage = batch.get("usage")
    return OpenAIJob(
        id=batch["id"],
        state=state,
        raw_status=raw_status,
        endpoint=_opt_str(batch.get("endpoint")) or "",
        model=_opt_str(batch.get("model")),
        metadata=_str_map(batch.get("metadata")),
        counts=_counts(batch.get("request_counts")),
        input_files=(input_file,) if input_file else (),
        output_file=_opt_str(batch.get("output_file_id")) or None,
        error_file=_opt_str(batch.get("error_file_id")) or None,
        errors=errors,
        created_at=_ts(batch.get("created_at")),
        started_at=_ts(batch.get("in_progress_at")),
        completed_at=next((t for t in ended if t is not None), None),
        error_codes=codes,
        usage=usage if isinstance(usage, dict) else None,
    )


def parse_file(data: Any) -> FileRef:
    """A ``FileObject`` (upload, retrieve or list item)."""
    item = _require_object(data, "file object")
    return FileRef(
        id=item["id"],
        filename=_opt_str(item.get("filename")) or "",
        size_bytes=_int(item.get("bytes")),
        created_at=_ts(item.get("created_at")),
        purpose=_opt_str(item.get("purpose")),
        deleted=item.get("deleted") is True,
        expires_at=_ts(item.get("expires_at")),
    )


def parse_page(data: Any, parse: Any, what: str) -> CursorPage:
    """A cursor page ``{"object":"list","data":[...],"has_more"}``; without ``has_more`` a
    non-empty page is taken to have more (as the SDK does: an empty page ends the walk)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ProviderTransient(f"malformed {what} list in provider response")
    items = tuple(parse(item) for item in data["data"])
    has_more = data.get("has_more")
    return CursorPage(items, bool(items) if has_more is None else has_more is True)


def cursor_repeats(after: str | None, used: set[str]) -> bool:
    """A cursor already followed: the server is not moving forward."""
    return after is not None and after in used


# ---------------------------------------------------------------------------- requests


def create_body(spec: JobSpec, output_expires_s: int | None = None) -> dict[str, Any]:
    """``POST /v1/batches``: one input file, the endpoint, ``24h``, the metadata."""
    if len(spec.input_files) != 1:
        raise ProviderPermanent("an OpenAI batch takes exactly one input file")
    if spec.endpoint not in ENDPOINTS:
        raise ProviderPermanent(
            f"endpoint {spec.endpoint!r} is not one OpenAI batches accept ({', '.join(ENDPOINTS)})"
        )
    body: dict[str, Any] = {
        "input_file_id": spec.input_files[0],
        "endpoint": spec.endpoint,
        "completion_window": COMPLETION_WINDOW,
    }
    if spec.metadata:
        body["metadata"] = dict(spec.metadata)
    if output_expires_s is not None:
        body["output_expires_after"] = {"anchor": "created_at", "seconds": output_expires_s}
    return body


def encode_line(custom_id: str, body: Mapping[str, Any], endpoint: str, model: str | None) -> bytes:
    """One input line: ``{"custom_id","method":"POST","url","body"}``; the route's ``model``
    fills a body that names none (a body's own model wins)."""
    if model and not body.get("model"):
        body = {**body, "model": model}
    line = {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def list_query(after: str | None, limit: int) -> list[tuple[str, str]]:
    pairs = [("limit", str(limit))]
    if after is not None:
        pairs.insert(0, ("after", after))
    return pairs


# ---------------------------------------------------------------------------- result lines


def parse_result_line(raw: bytes) -> ResultLine:
    """One output/error line: ``response`` (``status_code``, ``body``) for an HTTP answer,
    ``error`` (``code``, ``message``) for a request that never ran (``batch_expired``,
    ``batch_cancelled``). Raises ``ProviderPermanent`` unless it is a JSON object with a
    ``custom_id``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProviderPermanent("result line is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProviderPermanent("result line is not a JSON object")
    custom_id = data.get("custom_id")
    if custom_id is None or isinstance(custom_id, dict | list) or custom_id == "":
        raise ProviderPermanent("result line has no custom_id")
    response = data.get("response")
    response = response if isinstance(response, dict) else {}
    body = response.get("body")
    error = data.get("error")
    status = _opt_int(response.get("status_code"))
    if error is None and status is not None and status >= 400 and isinstance(body, dict):
        error = body.get("error")  # the HTTP error's own object: what the summary shows
    return ResultLine(custom_id=str(custom_id), status_code=status, body=body, error=error)


def ids_of(items: Sequence[Any]) -> list[str]:
    return [item.id for item in items]
