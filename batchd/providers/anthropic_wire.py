"""Anthropic Message Batches wire formats, pure: the status mapping, batches and result lines
parsed leniently, and batchd's neutral request lines translated to Anthropic's ``params``.

The mapping from Anthropic's ``processing_status`` (and, once ended, its request counts) to
``JobState`` lives here and nowhere else. A batch is ``in_progress`` (RUNNING: it has no queued
phase of its own), ``canceling`` (CANCELLING) or ``ended``: CANCELLED when a cancel was
initiated, EXPIRED when requests expired and none was answered, else SUCCEEDED (which may hold
errored, expired or canceled requests, as a Mistral job holds failed ones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from batchd.errors import ProviderPermanent, ProviderTransient
from batchd.models import JobState, RequestCounts
from batchd.providers.base import JobSnapshot, ResultLine

ENDPOINT: Final = "/v1/messages"
COUNT_KEYS: Final = ("processing", "succeeded", "errored", "canceled", "expired")
# Keys of an OpenAI/Mistral chat body with an Anthropic name of their own.
RENAMED: Final[Mapping[str, str]] = {"max_completion_tokens": "max_tokens"}
# An errored result's HTTP status, by the error's type (the Messages API's own statuses).
ERROR_STATUS: Final[Mapping[str, int]] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
UNANSWERED: Final[Mapping[str, str]] = {
    "canceled": "the batch was canceled before this request was processed",
    "expired": "the batch expired (24 hours) before this request was processed",
}


# ---------------------------------------------------------------- requests
def to_params(body: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    """Anthropic ``params`` for a neutral request body: a Mistral/OpenAI chat body
    (``messages`` with ``system`` turns, ``max_tokens`` or ``max_completion_tokens``, ``stop``)
    or already Anthropic's (returned as it is). The body's own ``model`` wins over the route's.
    Keys without an Anthropic name pass through unchanged (the API then refuses that request
    alone, as an errored result)."""
    params: dict[str, Any] = {}
    system: list[str] = []
    for key, value in body.items():
        if key == "messages" and isinstance(value, list):
            params["messages"] = [m for m in value if not _is_system(m)]
            system.extend(_text(m.get("content")) for m in value if _is_system(m))
        elif key == "stop":
            params["stop_sequences"] = [value] if isinstance(value, str) else value
        else:
            params[RENAMED.get(key, key)] = value
    if system:
        own = params.get("system")
        params["system"] = "\n\n".join([*([own] if isinstance(own, str) and own else []), *system])
    if "model" not in params and model:
        params = {"model": model, **params}
    return params


def _is_system(message: object) -> bool:
    return isinstance(message, dict) and message.get("role") in {"system", "developer"}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def request_line(custom_id: str, body: Mapping[str, Any], model: str | None) -> bytes:
    """One element of the create body's ``requests`` array, compact UTF-8 JSON."""
    item = {"custom_id": custom_id, "params": to_params(body, model)}
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------- batches
def parse_time(value: object) -> float | None:
    """An RFC 3339 string (``...Z`` or an offset) as unix seconds; None when absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def counts_of(data: Mapping[str, Any]) -> dict[str, int]:
    raw = data.get("request_counts")
    raw = raw if isinstance(raw, dict) else {}
    return {k: v if isinstance(v := raw.get(k), int) and v >= 0 else 0 for k in COUNT_KEYS}


def state_of(data: Mapping[str, Any], counts: Mapping[str, int]) -> JobState:
    status = data.get("processing_status")
    if status == "in_progress":
        return JobState.RUNNING
    if status == "canceling":
        return JobState.CANCELLING
    if status != "ended":
        return JobState.UNKNOWN
    if data.get("cancel_initiated_at"):
        return JobState.CANCELLED
    if counts["expired"] and not counts["succeeded"] and not counts["errored"]:
        return JobState.EXPIRED
    return JobState.SUCCEEDED


def parse_batch(
    data: object, metadata: Mapping[str, str] | None = None, endpoint: str = ENDPOINT
) -> JobSnapshot:
    """A ``MessageBatch``, leniently; ``metadata`` is batchd's own knowledge of the batch (the
    API keeps none). Raises ``ProviderTransient`` when it is not one (no ``id``)."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ProviderTransient("the provider answered something that is not a message batch")
    counts = counts_of(data)
    total = sum(counts.values())
    failed = counts["errored"] + counts["canceled"] + counts["expired"]
    return JobSnapshot(
        id=data["id"],
        state=state_of(data, counts),
        raw_status=str(data.get("processing_status")),
        endpoint=endpoint,
        metadata=dict(metadata or {}),
        counts=RequestCounts(
            total=total,
            completed=total - counts["processing"],
            succeeded=counts["succeeded"],
            failed=failed,
        ),
        output_file=data["id"] if results_url(data) else None,  # the results, by batch id
        created_at=parse_time(data.get("created_at")),
        completed_at=parse_time(data.get("ended_at")),
    )


def results_url(data: object) -> str | None:
    url = data.get("results_url") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url else None


def request_total(data: Mapping[str, Any]) -> int:
    """How many requests a batch holds (the counts always sum to it)."""
    return sum(counts_of(data).values())


# ---------------------------------------------------------------- results
def parse_result_line(raw: bytes) -> ResultLine:
    """``{"custom_id", "result": {"type": ...}}`` in neutral form: ``succeeded`` is a 200 with
    the ``Message`` as the body; ``errored`` the status of its error type with the error
    object (its ``message`` on top); ``canceled``/``expired`` no status (never answered).
    Raises ``ProviderPermanent`` unless it is a JSON object with a ``custom_id``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProviderPermanent("result line is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProviderPermanent("result line is not a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise ProviderPermanent("result line has no custom_id")
    result = data.get("result")
    result = result if isinstance(result, dict) else {}
    kind = result.get("type")
    if kind == "succeeded":
        return ResultLine(custom_id, 200, body=result.get("message"))
    if kind == "errored":
        error = _error_of(result.get("error"))
        return ResultLine(custom_id, ERROR_STATUS.get(str(error.get("type")), 400), error=error)
    message = UNANSWERED.get(str(kind), f"unknown result type {kind!r}")
    return ResultLine(custom_id, None, error={"type": str(kind), "message": message})


def _error_of(outer: object) -> dict[str, Any]:
    """The error of an ``errored`` result: the inner ``{type, message}`` (the outer envelope's
    ``request_id`` kept beside them)."""
    if not isinstance(outer, dict):
        return {"type": "api_error", "message": "errored without an error object"}
    inner = outer.get("error")
    error = dict(inner) if isinstance(inner, dict) else dict(outer)
    if outer.get("request_id"):
        error["request_id"] = outer["request_id"]
    error.setdefault("message", "errored")
    return error
