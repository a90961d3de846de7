"""Batch API handlers (reference 1.3): create (strict body), retrieve, list (``after`` and
``limit`` only, newest first, exclusive cursor, ``has_more``), cancel. There is no delete."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from batchd.emulator.lifecycle import JobRecord
from batchd.emulator.middleware import api_key_of
from batchd.emulator.openai.routes_files import (
    MAX_EXPIRY_S,
    MIN_EXPIRY_S,
    engine_of,
    file_of,
    int_param,
)
from batchd.emulator.openai.wire import (
    COMPLETION_WINDOW,
    ENDPOINTS,
    after_cursor,
    api_error,
    batch_status,
    cursor_page,
    not_found,
)
from batchd.emulator.wire import ApiError, json_response

routes = web.RouteTableDef()
CREATE_KEYS = frozenset(
    {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
)
MAX_METADATA_PAIRS, MAX_KEY_CHARS, MAX_VALUE_CHARS = 16, 64, 512
MAX_LIMIT, DEFAULT_LIMIT = 100, 20
CANCEL_MOOT = frozenset({"cancelling", "cancelled"})


def _wire(request: web.Request, job: JobRecord) -> dict[str, Any]:
    return engine_of(request).to_wire(job)


def _batch(request: web.Request) -> JobRecord:
    batch_id = request.match_info["batch_id"]
    job = engine_of(request).get(batch_id)
    if job is None:
        raise not_found("batch", batch_id)
    return job


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise api_error(400, "We could not parse the JSON body of your request.")
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise api_error(400, f"Unrecognized request argument supplied: {unknown[0]}")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise api_error(
                400,
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
    return body


def _check_create(body: dict[str, Any]) -> None:
    if body["endpoint"] not in ENDPOINTS:
        message = f"Invalid 'endpoint': expected one of {', '.join(ENDPOINTS)}."
        raise api_error(400, message, param="endpoint", code="invalid_value")
    if body["completion_window"] != COMPLETION_WINDOW:
        message = "Invalid 'completion_window': only '24h' is supported."
        raise api_error(400, message, param="completion_window", code="invalid_value")


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    bad = api_error(
        400,
        f"Invalid 'metadata': at most {MAX_METADATA_PAIRS} pairs of strings, keys up to "
        f"{MAX_KEY_CHARS} characters and values up to {MAX_VALUE_CHARS}.",
        param="metadata",
    )
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        raise bad
    for key, item in value.items():
        if len(key) > MAX_KEY_CHARS or not isinstance(item, str) or len(item) > MAX_VALUE_CHARS:
            raise bad
    return dict(value)


def _output_expiry(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("anchor") != "created_at":
        raise api_error(
            400,
            "Invalid 'output_expires_after.anchor': expected 'created_at'.",
            param="output_expires_after.anchor",
        )
    seconds = value.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        seconds = -1
    return int_param(str(seconds), "output_expires_after.seconds", MIN_EXPIRY_S, MAX_EXPIRY_S, 0)


@routes.post("/v1/batches")
async def create_batch(request: web.Request) -> web.Response:
    body = _body(await request.read())
    _check_create(body)
    metadata = _metadata(body.get("metadata"))
    expiry = _output_expiry(body.get("output_expires_after"))
    try:
        record = file_of(request, body["input_file_id"])
    except ApiError:
        message = f"Invalid 'input_file_id': file {body['input_file_id']!r} was not found."
        raise api_error(400, message, param="input_file_id") from None
    if record.purpose != "batch":
        message = f"Invalid 'input_file_id': file {record.id!r} does not have purpose 'batch'."
        raise api_error(400, message, param="input_file_id")
    job = engine_of(request).new_batch(
        input_file=record,
        endpoint=body["endpoint"],
        metadata=metadata,
        api_key=api_key_of(request),
        output_expires_s=expiry,
    )
    return json_response(_wire(request, job))


@routes.get("/v1/batches")
async def list_batches(request: web.Request) -> web.Response:
    limit = int_param(request.query.get("limit"), "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    engine = engine_of(request)
    engine.catch_up()
    newest_first = list(reversed(engine.jobs.values()))
    start, stop, more = after_cursor(
        [j.id for j in newest_first], request.query.get("after"), limit
    )
    page = newest_first[start:stop]
    for job in page:
        engine.refresh(job)
    return json_response(cursor_page([_wire(request, job) for job in page], more))


@routes.get("/v1/batches/{batch_id}")
async def get_batch(request: web.Request) -> web.Response:
    return json_response(_wire(request, _batch(request)))


@routes.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    """``cancelling`` and then ``cancelled``; cancelling again answers the batch as it is; a
    batch that has ended (or is writing its files) cannot be cancelled: 409."""
    engine = engine_of(request)
    job = _batch(request)
    current = batch_status(job, engine.clock.now())
    if current not in CANCEL_MOOT:
        engine.cancel(job)
        current = batch_status(job, engine.clock.now())
        if current not in CANCEL_MOOT:
            message = f"Cannot cancel a batch with status '{current}'."
            raise api_error(409, message, code="batch_not_cancellable")
    return json_response(_wire(request, job))
