"""``/v1/messages/batches...``: create, list, retrieve, cancel, delete and results."""

from __future__ import annotations

import json

from aiohttp import web

from batchd.emulator.anthropic.batches import BatchRecord, to_wire
from batchd.emulator.anthropic.middleware import api_key_of
from batchd.emulator.anthropic.requests import check_create
from batchd.emulator.anthropic.state import STATE, AnthropicState
from batchd.emulator.anthropic.wire import invalid, json_response, not_found
from batchd.emulator.middleware import route_key

routes = web.RouteTableDef()
BATCHES = "/v1/messages/batches"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
STREAM_CHUNK_BYTES = 1024 * 1024
RESULTS_CT = "application/binary"


def _state(request: web.Request) -> AnthropicState:
    return request.app[STATE]


def _batch(request: web.Request) -> BatchRecord:
    return _state(request).engine.find(api_key_of(request), request.match_info["batch_id"])


def _wire(request: web.Request, batch: BatchRecord) -> web.Response:
    return json_response(to_wire(batch, _state(request).base_url))


@routes.post(BATCHES)
async def create_batch(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:
        raise invalid(f"The request body is not valid JSON: {exc}") from exc
    requests = check_create(body)
    batch = await _state(request).engine.create(requests, api_key_of(request))
    return _wire(request, batch)


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit: Input should be between 1 and {MAX_LIMIT}")
    return limit


@routes.get(BATCHES)
async def list_batches(request: web.Request) -> web.Response:
    state = _state(request)
    query = request.query
    page, has_more = state.engine.page(
        api_key_of(request), query.get("after_id"), query.get("before_id"), _limit(request)
    )
    return json_response(
        {
            "data": [to_wire(b, state.base_url) for b in page],
            "has_more": has_more,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
    )


@routes.get(BATCHES + "/{batch_id}")
async def get_batch(request: web.Request) -> web.Response:
    return _wire(request, _batch(request))


@routes.post(BATCHES + "/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    batch = _batch(request)
    _state(request).engine.cancel(batch)
    return _wire(request, batch)


@routes.delete(BATCHES + "/{batch_id}")
async def delete_batch(request: web.Request) -> web.Response:
    batch = _batch(request)
    _state(request).engine.delete(batch)
    return json_response({"id": batch.id, "type": "message_batch_deleted"})


@routes.get(BATCHES + "/{batch_id}/results")
async def batch_results(request: web.Request) -> web.StreamResponse:
    """The results file with ``Content-Length``; a ``truncate`` fault cuts it short."""
    batch = _batch(request)
    if not batch.ready or batch.results_path is None:
        raise not_found(batch.id)  # the real API has no results before the end either
    headers = {"Content-Type": RESULTS_CT}
    rule = _state(request).faults.decide(route_key(request), None)
    if rule is None:
        return web.FileResponse(batch.results_path, headers=headers)
    response = web.StreamResponse(headers=headers)
    size = batch.results_path.stat().st_size
    response.content_length = size
    await response.prepare(request)
    remaining = int(size * rule.fraction)
    with batch.results_path.open("rb") as source:
        while chunk := source.read(min(STREAM_CHUNK_BYTES, remaining)):
            remaining -= len(chunk)
            await response.write(chunk)
    if request.transport is not None:
        request.transport.close()
    return response
