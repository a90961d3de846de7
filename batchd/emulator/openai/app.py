"""The OpenAI emulator's aiohttp application and its middleware, outermost first:

1. envelope: every response gets an ``x-request-id``; an error the shared fault injection
   rendered in Mistral's shape (429/5xx) is re-rendered in OpenAI's (``{"error":{...}}``,
   ``Retry-After`` kept); a 502 stays a load balancer's HTML page;
2. stats and 3. faults: the Mistral emulator's (same rules, routes such as
   ``POST /v1/batches``);
4. auth: ``/v1`` needs ``Authorization: Bearer <key>`` (401 ``invalid_api_key``, the key never
   echoed); ``OpenAI-Organization`` / ``OpenAI-Project`` are accepted and counted;
5. errors: ``ApiError`` rendered as is, anything in Mistral's shape (a malformed multipart)
   converted, unknown routes ``Invalid URL (METHOD /path)``, 500 for the unexpected.

Admin routes (``/_emulator/...``) are the Mistral emulator's: health, faults, stats, advance.
"""

from __future__ import annotations

import hmac
import json
from collections import Counter
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from batchd.emulator import routes_admin
from batchd.emulator.app import MAX_JSON_BODY_BYTES
from batchd.emulator.middleware import (
    fault_middleware,
    is_admin,
    route_key,
    stats_middleware,
)
from batchd.emulator.openai import routes_batches, routes_files
from batchd.emulator.openai.wire import error_body, request_id
from batchd.emulator.state import STATE, EmulatorState
from batchd.emulator.wire import ApiError, json_response

log = structlog.get_logger(__name__)
HEADERS_SEEN: web.AppKey[Counter[tuple[str, str]]] = web.AppKey("openai_headers")
ORG_HEADERS = ("OpenAI-Organization", "OpenAI-Project")
_TYPES = {429: "requests", 500: "server_error", 503: "server_error"}


def _openai_shape(body: object, status: int) -> dict[str, Any] | None:
    """OpenAI's envelope for a body in Mistral's shapes (``None``: already OpenAI's)."""
    if not isinstance(body, dict) or "error" in body:
        return None
    if body.get("object") == "error":
        message = body.get("message")
        text = message if isinstance(message, str) else json.dumps(message)
        type_ = _TYPES.get(status, "invalid_request_error")
        code = body.get("code") if status != 429 else "rate_limit_exceeded"
        return error_body(text, type_=type_, code=code if isinstance(code, str) else None)
    if "detail" in body:
        return error_body(json.dumps(body["detail"]))
    return None


def _reshaped(response: web.StreamResponse) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status < 400:
        return response
    if response.content_type != "application/json" or response.text is None:
        return response
    try:
        shaped = _openai_shape(json.loads(response.text), response.status)
    except ValueError:
        return response
    if shaped is None:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    return json_response(shaped, 400 if response.status == 422 else response.status, headers)


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = _reshaped(await handler(request))
    if not response.prepared:
        response.headers["x-request-id"] = request_id()
    return response


def _authorized(header: str, keys: tuple[str, ...]) -> bool:
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    return not keys or any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") or request.path == "/v1":
        state = request.app[STATE]
        if not _authorized(request.headers.get("Authorization", ""), state.config.api_keys):
            message = "Incorrect API key provided. You can find your API key in your account."
            return json_response(error_body(message, code="invalid_api_key"), 401)
        seen = request.app[HEADERS_SEEN]
        for name in ORG_HEADERS:
            if name in request.headers:
                seen[(name.lower(), request.headers[name])] += 1
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = _reshaped(exc.response())
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        message = f"Invalid URL ({request.method} {request.path})"
        response = json_response(error_body(message), exc.status)
    except web.HTTPClientError as exc:
        response = json_response(error_body(exc.reason), exc.status)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("emulator.handler_failed", route=route_key(request))
        return json_response(error_body("The server had an error.", type_="server_error"), 500)
    if not is_admin(request):
        log.info("emulator.request_refused", route=route_key(request), status=response.status)
    return response


MIDDLEWARES = (
    envelope_middleware,
    stats_middleware,
    fault_middleware,
    auth_middleware,
    error_middleware,
)


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_JSON_BODY_BYTES)
    app[STATE] = state
    app[HEADERS_SEEN] = Counter()
    app.add_routes(routes_files.routes)
    app.add_routes(routes_batches.routes)
    app.add_routes(routes_admin.routes)
    return app
