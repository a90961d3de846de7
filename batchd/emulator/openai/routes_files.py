"""Files API handlers (reference 1.2): upload (multipart, streamed to disk), retrieve, list
(cursor pages, newest first by default), delete, content (streamed, ``Content-Length``)."""

from __future__ import annotations

from aiohttp import web

from batchd.emulator.files import FileRecord, Received
from batchd.emulator.openai.engine import OpenAIEngine
from batchd.emulator.openai.wire import (
    after_cursor,
    api_error,
    cursor_page,
    file_to_wire,
    not_found,
)
from batchd.emulator.routes_files import send_file
from batchd.emulator.state import STATE, EmulatorState
from batchd.emulator.wire import json_response

routes = web.RouteTableDef()
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 2_592_000
MAX_FILES_LIMIT = 10_000


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def engine_of(request: web.Request) -> OpenAIEngine:
    engine = _state(request).engine
    assert isinstance(engine, OpenAIEngine)
    return engine


def file_of(request: web.Request, file_id: str | None = None) -> FileRecord:
    file_id = file_id if file_id is not None else request.match_info["file_id"]
    files = _state(request).files
    if not files.exists(file_id):
        raise not_found("file", file_id)
    return files.get(file_id)


def int_param(text: str | None, name: str, low: int, high: int, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise api_error(400, f"Invalid '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        message = f"Invalid '{name}': must be between {low} and {high}."
        raise api_error(400, message, param=name, code="integer_out_of_range")
    return value


def _expiry(fields: dict[str, str]) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise api_error(
            400,
            "Invalid 'expires_after.anchor': expected 'created_at'.",
            param="expires_after.anchor",
        )
    return int_param(seconds, "expires_after.seconds", MIN_EXPIRY_S, MAX_EXPIRY_S, MIN_EXPIRY_S)


def _check_upload(
    request: web.Request, fields: dict[str, str], received: Received | None
) -> tuple[str, int | None]:
    """``(purpose, expires_after seconds)`` of a valid upload; raises ``ApiError`` otherwise."""
    if received is None:
        raise api_error(400, "Missing required parameter: 'file'.", param="file")
    purpose = fields.get("purpose")
    if purpose is None or purpose not in PURPOSES:
        message = f"Invalid 'purpose': expected one of {', '.join(sorted(PURPOSES))}."
        raise api_error(400, message, param="purpose")
    limit = engine_of(request).options.max_batch_file_bytes
    if purpose == "batch" and received.size_bytes > limit:
        message = f"File is too large: batch input files can be at most {limit} bytes."
        raise api_error(400, message, param="file", code="file_too_large")
    return purpose, _expiry(fields)


@routes.post("/v1/files")
async def upload_file(request: web.Request) -> web.Response:
    state = _state(request)
    file_id = engine_of(request).new_file_id()
    path = state.files.new_path(file_id)
    fields, received = await state.files.read_form(request, path)
    try:
        purpose, expiry_s = _check_upload(request, fields, received)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    assert received is not None
    now = int(state.clock.now())
    record = FileRecord(
        id=file_id,
        filename=received.filename,
        size_bytes=received.size_bytes,
        created_at=now,
        purpose=purpose,
        sample_type=purpose,
        source="upload",
        path=path,
        num_lines=received.num_lines,
        mimetype=received.content_type,
        expires_at=now + (expiry_s or 30 * 86_400) if purpose == "batch" or expiry_s else None,
    )
    return json_response(file_to_wire(state.files.add(record)))


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    query = request.query
    limit = int_param(query.get("limit"), "limit", 1, MAX_FILES_LIMIT, MAX_FILES_LIMIT)
    order = query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise api_error(400, "Invalid 'order': expected 'asc' or 'desc'.", param="order")
    purpose = query.get("purpose")
    records = _state(request).files.all()
    if order == "desc":
        records.reverse()
    records = [r for r in records if purpose is None or r.purpose == purpose]
    start, stop, more = after_cursor([r.id for r in records], query.get("after"), limit)
    data = [file_to_wire(r) for r in records[start:stop]]
    return json_response(cursor_page(data, more))


@routes.get("/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    return json_response(file_to_wire(file_of(request)))


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    record = file_of(request)
    _state(request).files.delete(record.id)
    return json_response({"id": record.id, "object": "file", "deleted": True})


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    return await send_file(request, file_of(request))
