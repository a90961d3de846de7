"""The two kinds of queue message, and why one is refused (pure).

A *request* is one LLM request; requests for a route accumulate into one submission
(``batchd.queues.batcher``)::

    {"custom_id": "doc-1", "body": {...}, "route": "docs", "reply_to": "results.docs",
     "metadata": {"tenant": "a"}}

A *batch* is a whole batch file in one message, treated exactly like a dropped file::

    {"name": "nightly.jsonl", "route": "docs", "lines": [{"custom_id": "a", "body": {...}}]}

or the file's JSONL bytes as the message body with its name in the ``batchd-name`` header
(and ``batchd-route`` for the route). ``route`` defaults to the source's ``route``.

``parse_message`` turns a message's bytes and headers into a ``Request``, a ``Batch`` or a
``Bad`` with a one-line reason (never echoing the input), which the source dead-letters.
``REQUEST_SCHEMA`` and ``BATCH_SCHEMA`` are the JSON Schemas the README shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from batchd.batchfile import MAX_CUSTOM_ID_CHARS, BadLine, normalized_line, parse_request
from batchd.spool import name_allowed

NAME_HEADER: Final = "batchd-name"
ROUTE_HEADER: Final = "batchd-route"
REQUEST_KEYS: Final = frozenset({"custom_id", "body", "route", "reply_to", "metadata"})
BATCH_KEYS: Final = frozenset({"name", "route", "lines"})
MAX_REPLY_TO_CHARS: Final = 255
MAX_METADATA_KEYS: Final = 16

REQUEST_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batchd request message",
    "type": "object",
    "required": ["custom_id", "body"],
    "additionalProperties": False,
    "properties": {
        "custom_id": {"type": "string", "minLength": 1, "maxLength": MAX_CUSTOM_ID_CHARS},
        "body": {"type": "object"},
        "route": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
        "reply_to": {"type": "string", "minLength": 1, "maxLength": MAX_REPLY_TO_CHARS},
        "metadata": {
            "type": "object",
            "maxProperties": MAX_METADATA_KEYS,
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
    },
}

BATCH_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batchd batch message",
    "type": "object",
    "required": ["name", "lines"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9._-]+\.jsonl$", "maxLength": 255},
        "route": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["body"],
                "properties": {
                    "custom_id": {"type": "string"},
                    "body": {"type": "object"},
                    "method": {"const": "POST"},
                    "url": {"type": "string"},
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may hold (a request: ``max_request_bytes``; a batch: the file limits)."""

    max_request_bytes: int = 1024 * 1024
    max_batch_bytes: int = 512 * 1024 * 1024
    max_batch_lines: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Request:
    custom_id: str
    route: str
    line: bytes  # the normalized batch line, newline-terminated (``batchfile.normalized_line``)
    reply_to: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    name: str
    route: str
    data: bytes  # JSONL, validated later exactly like a dropped file


@dataclass(frozen=True, slots=True)
class Bad:
    reason: str


Parsed = Request | Batch | Bad


def parse_message(
    body: bytes,
    headers: Mapping[str, Any],
    *,
    default_route: str | None,
    routes: Mapping[str, str],
    limits: Limits = Limits(),
) -> Parsed:
    """Classify and check one message. ``routes`` maps each known route to its endpoint."""
    name = headers.get(NAME_HEADER)
    if name is not None:  # a JSONL batch file as the body
        route = _header_text(headers.get(ROUTE_HEADER)) or default_route
        return _batch(_header_text(name) or "", route, body, routes, limits)
    if len(body) > max(limits.max_request_bytes, limits.max_batch_bytes):
        return Bad(f"message of {len(body)} bytes is over the limit")
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Bad(f"invalid UTF-8 at byte {exc.start + 1}")
    except (ValueError, RecursionError) as exc:
        return Bad(f"invalid JSON: {_short(exc)}")
    if not isinstance(value, dict):
        return Bad("not a JSON object: a request has custom_id and body, a batch name and lines")
    if "lines" in value or "name" in value:
        return _batch_object(value, default_route, routes, limits)
    return _request(value, len(body), default_route, routes, limits)


def _request(
    value: dict[str, Any],
    size: int,
    default_route: str | None,
    routes: Mapping[str, str],
    limits: Limits,
) -> Parsed:
    route = value.get("route", default_route)
    problem = _request_problem(value, size, route, routes, limits)
    if problem:
        return Bad(problem)
    assert isinstance(route, str)
    custom_id, metadata = value["custom_id"], value.get("metadata", {})
    try:
        line = normalized_line(custom_id, value.get("body"))
        parse_request(line.rstrip(b"\n"), routes[route])
    except BadLine as exc:
        return Bad(str(exc))
    except (ValueError, TypeError) as exc:
        return Bad(f"cannot be encoded: {exc}")
    return Request(custom_id, route, line, value.get("reply_to"), dict(metadata))


def _request_problem(
    value: dict[str, Any], size: int, route: object, routes: Mapping[str, str], limits: Limits
) -> str | None:
    """What is wrong with a request's envelope (None: nothing); its body is checked after."""
    unknown = sorted(set(value) - REQUEST_KEYS)
    if unknown:
        return f"unknown key(s) {_names(unknown)}; allowed: {_names(sorted(REQUEST_KEYS))}"
    if size > limits.max_request_bytes:
        return f"request of {size} bytes is over max_request_bytes ({limits.max_request_bytes})"
    custom_id = value.get("custom_id")
    if custom_id is None:
        return "missing custom_id: a request needs one to match its result"
    if not (isinstance(custom_id, str) and 0 < len(custom_id) <= MAX_CUSTOM_ID_CHARS):
        return f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters"
    if "body" not in value:
        return "missing body: the LLM request itself (a JSON object)"
    reply_to = value.get("reply_to")
    if reply_to is not None and not (
        isinstance(reply_to, str) and 0 < len(reply_to) <= MAX_REPLY_TO_CHARS
    ):
        return f"reply_to must be a string of 1 to {MAX_REPLY_TO_CHARS} characters"
    if not _is_metadata(value.get("metadata", {})):
        return (
            f"metadata must be an object of at most {MAX_METADATA_KEYS} string values "
            "(of at most 512 characters)"
        )
    return _route_problem(route, routes)


def _batch_object(
    value: dict[str, Any], default_route: str | None, routes: Mapping[str, str], limits: Limits
) -> Parsed:
    unknown = sorted(set(value) - BATCH_KEYS)
    if unknown:
        return Bad(f"unknown key(s) {_names(unknown)}; allowed: {_names(sorted(BATCH_KEYS))}")
    lines = value.get("lines")
    if not isinstance(lines, list) or not lines:
        return Bad("lines must be a non-empty array of batch lines")
    if len(lines) > limits.max_batch_lines:
        return Bad(f"{len(lines)} lines is over the limit of {limits.max_batch_lines}")
    try:
        data = b"".join(
            json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            for line in lines
        )
    except (ValueError, TypeError) as exc:
        return Bad(f"lines cannot be encoded: {exc}")
    name = value.get("name")
    return _batch(
        name if isinstance(name, str) else "",
        value.get("route", default_route),
        data,
        routes,
        limits,
    )


def _batch(
    name: str, route: object, data: bytes, routes: Mapping[str, str], limits: Limits
) -> Parsed:
    if not name_allowed(name):
        return Bad("batch name missing or not allowed: use [A-Za-z0-9._-], ending in .jsonl")
    problem = _route_problem(route, routes)
    if problem:
        return Bad(problem)
    if len(data) > limits.max_batch_bytes:
        return Bad(f"batch of {len(data)} bytes is over max_file_bytes ({limits.max_batch_bytes})")
    assert isinstance(route, str)
    return Batch(name, route, data)


def _route_problem(route: object, routes: Mapping[str, str]) -> str | None:
    if route is None:
        return "no route: name one in the message, or set the source's route"
    if not isinstance(route, str) or route not in routes:
        shown = route[:64] if isinstance(route, str) else type(route).__name__
        return f"unknown route {shown!r} (known: {', '.join(sorted(routes)) or 'none'})"
    return None


def _is_metadata(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_METADATA_KEYS
        and all(isinstance(k, str) and 0 < len(k) <= 32 for k in value)
        and all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    )


def _header_text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _names(keys: list[str]) -> str:
    return ", ".join(repr(k[:40]) for k in keys[:6])


def _short(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc).split(";")[0][:120]
