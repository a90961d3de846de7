"""Admin endpoints under ``/_emulator/`` (no auth, never faulted, not counted in stats).

- ``GET /_emulator/health``: ``{"status":"ok","now","speed","jobs","files"}``
- ``GET /_emulator/faults``, ``PUT /_emulator/faults``: the fault config as JSON
  (``{"seed": int|null, "rules": [{"kind","probability","route","phase","delay_s",
  "retry_after_s","fraction","limit"}]}``); PUT replaces it and restarts the fault counters
- ``GET /_emulator/stats``, ``POST /_emulator/stats/reset``: request counts per route template
- ``POST /_emulator/advance`` ``{"seconds": float}``: jump emulated time forward (finite,
  ``0 <= seconds <= 100 years``, and never past the year 9999: else 422/400)

Bad requests get 422 (FastAPI's detail: unknown keys, wrong types, out of range) or 400; the
engine is never touched by a refused request.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchd.emulator.faults import fault_config_from_json
from batchd.emulator.state import STATE, EmulatorState
from batchd.emulator.validation import fastapi_detail, parse_json_body, validate
from batchd.emulator.wire import bad_request, json_response, validation_error

routes = web.RouteTableDef()


MAX_ADVANCE_S = 100 * 365 * 86_400.0


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: Annotated[float, Field(ge=0, le=MAX_ADVANCE_S, allow_inf_nan=False)]


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


@routes.get("/_emulator/health")
async def health(request: web.Request) -> web.Response:
    state = _state(request)
    return json_response(
        {
            "status": "ok",
            "now": state.clock.now(),
            "speed": state.config.speed,
            "jobs": len(state.engine.jobs),
            "files": len(state.files),
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
    except ValueError as exc:  # past the year 9999
        raise bad_request(str(exc)) from exc
    return json_response({"now": state.clock.now()})
