"""The request pipeline of the Anthropic emulator, outermost first:

1. request id: every response carries ``request-id`` (error bodies repeat it);
2. stats: count the request under its route template;
3. faults: the shared fault rules (``batchd.emulator.faults``), answered in Anthropic's error
   shape (429 with ``retry-after``, 5xx ``api_error``), or a delay, a reset, a late handler;
4. auth: ``/v1`` needs ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (401
   ``authentication_error`` otherwise) and an ``anthropic-version`` header, any value (400);
5. errors: ``AnthropicError`` and aiohttp's own 4xx in Anthropic's shape, 500 ``api_error``
   for anything unexpected (logged with its traceback).

Admin routes (``/_emulator/...``) are neither counted, faulted nor authenticated.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from batchd.emulator.anthropic.state import STATE
from batchd.emulator.anthropic.wire import (
    REQUEST_ID,
    AnthropicError,
    base62,
    error_response,
)
from batchd.emulator.faults import LATE_KINDS, STATUS_KINDS, FaultKind, FaultRule, Phase
from batchd.emulator.middleware import _late, abort_connection, is_admin, route_key
from batchd.emulator.wire import ApiError

log = structlog.get_logger(__name__)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = "req_" + base62(secrets.token_bytes(18))
    response = await handler(request)
    if not response.prepared:
        response.headers["request-id"] = request[REQUEST_ID]
    return response


@web.middleware
async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_admin(request):
        request.app[STATE].stats[route_key(request)] += 1
    return await handler(request)


def fault_response(rule: FaultRule, request: web.Request) -> web.Response:
    status = int(rule.kind.value)
    if rule.kind is FaultKind.RATE_LIMIT:
        headers = {"retry-after": str(rule.retry_after_s)}
        message = "Number of requests has exceeded your rate limit"
        return error_response(429, message, request[REQUEST_ID], headers)
    return error_response(status, "Internal server error", request[REQUEST_ID])


async def _apply(
    rule: FaultRule, request: web.Request, response: web.StreamResponse | None
) -> web.StreamResponse | None:
    log.info(
        "emulator.fault_injected",
        kind=rule.kind.value,
        phase=rule.phase.value,
        route=route_key(request),
    )
    if rule.kind in STATUS_KINDS:
        return fault_response(rule, request)
    if rule.kind is FaultKind.LATENCY:
        await asyncio.sleep(rule.delay_s)
        return response
    abort_connection(request)
    return web.Response(status=499)  # never sent: the connection is gone


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_admin(request):
        return await handler(request)
    injector = request.app[STATE].faults
    key = route_key(request)
    before = injector.decide(key, Phase.BEFORE)
    if before is not None and before.kind in LATE_KINDS:
        return await _late(before, request, handler)
    if before is not None:
        replaced = await _apply(before, request, None)
        if replaced is not None:
            return replaced
    response = await handler(request)
    after = injector.decide(key, Phase.AFTER)
    if after is not None:
        return await _apply(after, request, response) or response
    return response


def api_key_of(request: web.Request) -> str:
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    return bearer.strip() if scheme.lower() == "bearer" else ""


def _authorized(key: str, keys: tuple[str, ...]) -> bool:
    if not key:
        return False
    return not keys or any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") or request.path == "/v1":
        if not _authorized(api_key_of(request), request.app[STATE].config.api_keys):
            raise AnthropicError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version", "").strip():
            raise AnthropicError(400, "anthropic-version: header is required")
    return await handler(request)


def client_error(exc: Exception, request_id: str) -> web.Response | None:
    """The response to an expected client error (``None``: not one)."""
    if isinstance(exc, AnthropicError):
        return error_response(exc.status, exc.message, request_id, exc.headers)
    if isinstance(exc, ApiError):  # the admin routes, shared with the Mistral emulator
        return exc.response()
    if isinstance(exc, web.HTTPNotFound):
        return error_response(404, "Not found", request_id)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return error_response(405, "Method not allowed", request_id)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_response(413, "Request exceeds the maximum allowed size", request_id)
    if isinstance(exc, web.HTTPClientError):
        return error_response(exc.status, exc.reason, request_id)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        response = client_error(exc, request[REQUEST_ID])
        if response is not None:
            log.info("emulator.request_refused", route=route_key(request), status=response.status)
            return response
        if isinstance(exc, web.HTTPException):
            raise
        log.exception("emulator.handler_failed", route=route_key(request))
        return error_response(500, "Internal server error", request[REQUEST_ID])


MIDDLEWARES = (
    request_id_middleware,
    stats_middleware,
    fault_middleware,
    error_middleware,
    auth_middleware,
)
