"""Admin endpoints of the Anthropic emulator, as the Mistral emulator's (no auth, never
faulted, not counted): ``GET /_emulator/health``, ``GET|PUT /_emulator/faults``,
``GET /_emulator/stats``, ``POST /_emulator/stats/reset``, ``POST /_emulator/advance``
``{"seconds"}``."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from batchd.emulator.anthropic.state import STATE, AnthropicState
from batchd.emulator.faults import fault_config_from_json
from batchd.emulator.routes_admin import AdvanceIn
from batchd.emulator.validation import fastapi_detail, parse_json_body, validate
from batchd.emulator.wire import bad_request, json_response, validation_error

routes = web.RouteTableDef()


def _state(request: web.Request) -> AnthropicState:
    return request.app[STATE]


@routes.get("/_emulator/health")
async def health(request: web.Request) -> web.Response:
    state = _state(request)
    return json_response(
        {
            "status": "ok",
            "provider": "anthropic",
            "now": state.clock.now(),
            "speed": state.config.speed,
            "batches": len(state.engine.batches),
        }
    )


@routes.get("/_emulator/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(_state(request).faults.config.to_json())


@routes.put("/_emulator/faults")
async def put_faults(request: web.Request) -> web.Response:
    data = parse_json_body(await request.read())
    try:
        config = fault_config_from_json(data)
    except ValidationError as exc:
        raise validation_error(fastapi_detail(exc, "body")) from exc
    state = _state(request)
    state.faults.set(config)
    return json_response(state.faults.config.to_json())


@routes.get("/_emulator/stats")
async def get_stats(request: web.Request) -> web.Response:
    return json_response(_state(request).stats_snapshot())


@routes.post("/_emulator/stats/reset")
async def reset_stats(request: web.Request) -> web.Response:
    state = _state(request)
    state.reset_stats()
    return json_response(state.stats_snapshot())


@routes.post("/_emulator/advance")
async def advance(request: web.Request) -> web.Response:
    body = validate(AdvanceIn, parse_json_body(await request.read()), "body")
    state = _state(request)
    try:
        state.engine.advance(body.seconds)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    return json_response({"now": state.clock.now()})
