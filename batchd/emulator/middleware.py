"""The request pipeline around every handler, outermost first:

1. stats: count the request under its route template (``GET /v1/batch/jobs/{job_id}``);
2. faults: maybe fail, delay or drop it before the handler, or after it (the effect happened),
   or run the handler late whatever the client does (``late``, ``late_reset``);
3. auth: ``/v1`` needs ``Authorization: Bearer <key>`` (the gateway answers 401 before
   routing, so an unknown ``/v1`` path without a key is 401, not 404);
4. errors: render ``ApiError``, FastAPI's 404/405 bodies, aiohttp's own 4xx in Mistral's error
   shape, and 500 for anything unexpected. A refused request (4xx) is logged in one line
   (``emulator.request_refused``); only an unexpected error gets a traceback.

Admin routes (``/_emulator/...``) are neither counted, faulted nor authenticated.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import struct

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from batchd.emulator.faults import LATE_KINDS, STATUS_KINDS, FaultKind, FaultRule, Phase
from batchd.emulator.state import STATE
from batchd.emulator.wire import (
    ApiError,
    json_response,
    method_not_allowed,
    object_error,
    rate_limited,
    route_not_found,
    server_error,
    unauthorized,
)

log = structlog.get_logger(__name__)
ADMIN_PREFIX = "/_emulator/"
_LATE: set[asyncio.Task[web.StreamResponse]] = set()  # late handlers still to run (kept alive)


def route_key(request: web.Request) -> str:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else "<unmatched>"
    return f"{request.method} {template}"


def is_admin(request: web.Request) -> bool:
    return request.path.startswith(ADMIN_PREFIX)


def abort_connection(request: web.Request) -> None:
    """Drop the connection with a TCP reset (no response at all)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@web.middleware
async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_admin(request):
        request.app[STATE].stats[route_key(request)] += 1
    return await handler(request)


def _fault_response(rule: FaultRule) -> web.Response:
    if rule.kind is FaultKind.RATE_LIMIT:
        return rate_limited(rule.retry_after_s)
    return server_error(int(rule.kind.value))


async def _apply(
    rule: FaultRule, request: web.Request, response: web.StreamResponse | None
) -> web.StreamResponse | None:
    """The response to send instead, or ``None`` to carry on (latency before the handler)."""
    log.info(
        "emulator.fault_injected",
        kind=rule.kind.value,
        phase=rule.phase.value,
        route=route_key(request),
    )
    if rule.kind in STATUS_KINDS:
        return _fault_response(rule)
    if rule.kind is FaultKind.LATENCY:
        await asyncio.sleep(rule.delay_s)
        return response
    abort_connection(request)
    return web.Response(status=499)  # never sent: the connection is gone


async def _late(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler ``delay_s`` later even if the client leaves (or this handler is
    cancelled): a create the provider processes after its client gave up."""
    log.info(
        "emulator.fault_injected", kind=rule.kind.value, phase="before", route=route_key(request)
    )
    await request.read()  # the whole body now, while the client is surely there

    async def apply() -> web.StreamResponse:
        await asyncio.sleep(rule.delay_s)
        return await handler(request)

    task = asyncio.ensure_future(apply())
    _LATE.add(task)
    task.add_done_callback(_LATE.discard)
    response = await asyncio.shield(task)
    if rule.kind is FaultKind.LATE_RESET:
        abort_connection(request)
        return web.Response(status=499)  # never sent: the connection is gone
    return response


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


def _authorized(header: str, keys: tuple[str, ...]) -> bool:
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    if not keys:
        return True
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)


def api_key_of(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") or request.path == "/v1":
        header = request.headers.get("Authorization", "")
        if not _authorized(header, request.app[STATE].config.api_keys):
            return unauthorized()
    return await handler(request)


def client_error(exc: Exception) -> web.Response | None:
    """The response to an expected client error (``None``: not one)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, web.HTTPNotFound):
        return route_not_found()
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return method_not_allowed()
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return json_response(object_error("Request body too large", code="too_large"), 413)
    if isinstance(exc, web.HTTPClientError):
        return json_response(object_error(exc.reason), exc.status)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        response = client_error(exc)
        if response is not None:
            log.info("emulator.request_refused", route=route_key(request), status=response.status)
            return response
        if isinstance(exc, web.HTTPException):
            raise
        log.exception("emulator.handler_failed", route=route_key(request))
        return server_error(500)


MIDDLEWARES = (stats_middleware, fault_middleware, auth_middleware, error_middleware)
