"""Validating a batch's input file (OpenAI's rules), in a worker thread.

A line is ``{"custom_id": str, "method": "POST", "url": <the batch endpoint>, "body": {...}}``.
Problems with the file itself fail the whole batch, each reported as a ``BatchError``
(``{"code","line","message","param"}``, line numbers from 1): ``invalid_json_line``,
``missing_required_parameter``, ``invalid_method``, ``url_mismatch``, ``duplicate_custom_id``,
``model_mismatch`` (one model per file), ``empty_file``, ``too_many_tasks``. At most
``MAX_REPORTED`` are reported. A body its endpoint refuses is a per-request failure instead
(``checks``), never a failed batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchd.emulator.openai import checks
from batchd.emulator.scan import ScanResult, checkpoint

MAX_REPORTED = 100
NOT_JSON = "This line is not parseable as valid JSON."


@dataclass
class BatchScan(ScanResult):
    """A scan with what OpenAI needs beyond Mistral's: the model and the tokens enqueued."""

    model: str | None = None
    tokens: int = 0


@dataclass
class _Errors:
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, code: str, line: int | None, message: str, param: str | None = None) -> None:
        if len(self.items) < MAX_REPORTED:
            self.items.append({"code": code, "line": line, "message": message, "param": param})


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of every non-blank line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def _line_problem(obj: object, endpoint: str) -> tuple[str, str, str | None] | None:
    """``(code, message, param)`` when a parsed line breaks the file format."""
    if not isinstance(obj, dict):
        return "invalid_json_line", "Each line must be a JSON object.", None
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"
    if obj.get("method") != "POST":
        return "invalid_method", "The only supported method is 'POST'.", "method"
    if obj.get("url") != endpoint:
        message = f"The URL provided for this request does not match the batch endpoint {endpoint}."
        return "url_mismatch", message, "url"
    if not isinstance(obj.get("body"), dict):
        return "missing_required_parameter", "Missing required parameter: 'body'.", "body"
    return None


def _parse(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def scan_batch(
    path: Path, endpoint: str, *, max_requests: int, cancel: threading.Event
) -> BatchScan:
    result = BatchScan()
    errors = _Errors()
    seen: set[str] = set()
    models: set[str] = set()
    for count, (number, raw) in enumerate(raw_lines(path)):
        checkpoint(count, cancel)
        obj = _parse(raw)
        if obj is _NOT_JSON:
            errors.add("invalid_json_line", number, NOT_JSON)
            continue
        problem = _line_problem(obj, endpoint)
        if problem is not None:
            errors.add(problem[0], number, problem[1], problem[2])
            continue
        assert isinstance(obj, dict)
        if obj["custom_id"] in seen:
            message = f"The custom_id '{obj['custom_id']}' is not unique in this file."
            errors.add("duplicate_custom_id", number, message, "custom_id")
            continue
        seen.add(obj["custom_id"])
        body = obj["body"]
        if isinstance(body.get("model"), str):
            models.add(body["model"])
        if checks.check(endpoint, body) is not None:
            result.failed.append(result.n_requests)
        result.tokens += checks.token_estimate(body)
        result.n_requests += 1
    _file_problems(result, errors, models, max_requests)
    result.errors = errors.items
    return result


def _file_problems(result: BatchScan, errors: _Errors, models: set[str], max_requests: int) -> None:
    if len(models) > 1:
        message = "All requests in a batch must use the same model; found " + ", ".join(
            sorted(models)
        )
        errors.add("model_mismatch", None, message, "model")
    result.model = next(iter(models)) if len(models) == 1 else None
    if not errors.items and result.n_requests == 0:
        errors.add("empty_file", None, "The input file contains no requests.")
    if result.n_requests > max_requests:
        message = f"A batch can contain at most {max_requests} requests."
        errors.add("too_many_tasks", None, message)


def iter_requests(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(index, custom_id, body)`` of every request of a validated input, in order."""
    for index, (_number, raw) in enumerate(raw_lines(path)):
        obj = json.loads(raw)
        yield index, obj["custom_id"], obj["body"]
