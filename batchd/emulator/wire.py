"""Response bodies on the wire: JSON responses and the error shapes of reference section 1.6.

- 400/404/409/413 and 5xx: ``{"object":"error","message","type","param":null,"code"}``
- 422: FastAPI's ``{"detail":[{"type","loc","msg","input"[,"ctx"]}]}``
- 401: the gateway's ``{"message":"Unauthorized","request_id"}`` (``application/json;
  charset=utf-8``)
- 429: ``{"object":"error","message":"Requests rate limit exceeded","type":"rate_limited",
  "param":null,"code":"1300"}`` with ``Retry-After`` **[shape inferred]**
- 502: an HTML page, as a load balancer sends it (clients must not assume JSON)
- unknown route / method: FastAPI's ``{"detail":"Not Found"}`` / ``{"detail":"Method Not
  Allowed"}``
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

JSON_CT = "application/json"


def dumps(data: object) -> str:
    """Compact JSON, always valid: a NaN or an infinity (echoed from a request in a 422's
    ``input``) is written as a string, since JSON has no such number."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), separators=(",", ":"), ensure_ascii=False)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(data), status=status, content_type=JSON_CT, charset="utf-8", headers=headers
    )


class ApiError(Exception):
    """Raised by handlers; the error middleware renders it."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_response(self.body, self.status, self.headers)


def object_error(
    message: object,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def bad_request(message: str, code: str | None = None) -> ApiError:
    return ApiError(400, object_error(message, code=code))


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, object_error(f"{kind} {ident} not found", code="not_found"))


def conflict(message: str) -> ApiError:
    return ApiError(409, object_error(message, code="conflict"))


def too_large(limit_bytes: int) -> ApiError:
    message = f"File too large: the maximum size is {limit_bytes} bytes"
    return ApiError(413, object_error(message, code="file_too_large"))


def validation_error(detail: Sequence[Mapping[str, Any]]) -> ApiError:
    return ApiError(422, {"detail": list(detail)})


def detail_item(
    type_: str,
    loc: Sequence[str | int],
    msg: str,
    input_: object,
    ctx: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"type": type_, "loc": list(loc), "msg": msg, "input": input_}
    if ctx is not None:
        item["ctx"] = dict(ctx)
    return item


def unauthorized() -> web.Response:
    body = {"message": "Unauthorized", "request_id": uuid.uuid4().hex}
    return json_response(body, 401)


def rate_limited(retry_after_s: int) -> web.Response:
    body = object_error("Requests rate limit exceeded", type_="rate_limited", code="1300")
    return json_response(body, 429, {"Retry-After": str(retry_after_s)})


def server_error(status: int) -> web.Response:
    if status == 502:
        html = "<html><head><title>502 Bad Gateway</title></head><body>"
        html += "<center><h1>502 Bad Gateway</h1></center></body></html>\n"
        return web.Response(text=html, status=502, content_type="text/html")
    if status == 503:
        return json_response(object_error("Service unavailable", type_="service_unavailable"), 503)
    return json_response(object_error("Internal server error", type_="internal_error"), status)


def route_not_found() -> web.Response:
    return json_response({"detail": "Not Found"}, 404)


def method_not_allowed() -> web.Response:
    return json_response({"detail": "Method Not Allowed"}, 405)


def blob_error(status: int, code: str, message: str) -> web.Response:
    """The storage service's XML error (the signed URL points at a blob store)."""
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(text=xml, status=status, content_type="application/xml")
