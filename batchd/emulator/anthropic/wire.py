"""Anthropic's wire format: RFC 3339 times, ids, JSON responses and the error envelope.

Errors are ``{"type":"error","error":{"type","message"},"request_id"}`` with the error type
named by the status (reference section 2.1): 400 ``invalid_request_error``, 401
``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
``request_too_large``, 429 ``rate_limit_error``, 500 ``api_error``, 529 ``overloaded_error``.
Every response carries a ``request-id`` header (the SDK reads it from there only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from batchd.emulator.wire import dumps

JSON_CT = "application/json"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
REQUEST_ID: web.RequestKey[str] = web.RequestKey("anthropic_request_id", str)


def rfc3339(t: float | None) -> str | None:
    """``2024-09-24T18:37:24.100435Z`` (microseconds, always ``Z``)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def base62(digest: bytes, length: int = 24) -> str:
    """``length`` characters of ``[0-9A-Za-z]`` drawn from ``digest``."""
    number = int.from_bytes(digest, "big")
    out = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        out.append(_ALPHABET[rest])
    return "".join(out)


def derived_id(prefix: str, seed: str) -> str:
    """An id like the API's (``msgbatch_...``, ``msg_...``, ``req_...``) derived from ``seed``."""
    return prefix + base62(hashlib.blake2b(seed.encode(), digest_size=24).digest())


class AnthropicError(Exception):
    """Raised by handlers; the error middleware renders it with the request's id."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(data), status=status, content_type=JSON_CT, charset="utf-8", headers=headers
    )


def error_response(
    status: int, message: str, request_id: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response(error_body(status, message, request_id), status, headers)


def invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message)


def not_found(batch_id: str) -> AnthropicError:
    return AnthropicError(404, f"No message batch found with id '{batch_id}'")
