"""Errors as ``application/problem+json`` (RFC 9457), and the middleware that makes every error
one: an ``HTTPException`` keeps its status, anything else is a logged 500 without details."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

PROBLEM_TYPE: Final = "application/problem+json"
_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(status: int, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="batchd"'} if status == 401 else None
    return web.Response(
        status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers
    )


class Problem(Exception):
    """Raised by a handler: answered as a problem document."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra

    def response(self) -> web.Response:
        return problem(self.status, self.detail, **self.extra)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason or _TITLES.get(exc.status, "Error"))
    except Exception as exc:
        log.exception("api.request_failed", path=request.path, error_type=type(exc).__name__)
        return problem(500, "the server failed to answer; see its log")
