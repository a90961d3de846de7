"""``GET /openapi.json``: the API described in OpenAPI 3.1 (kept beside the handlers it
describes; ``tests/integration/api/test_schema.py`` runs Schemathesis against a daemon)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

NULLABLE_STR: Final = {"type": ["string", "null"]}
NULLABLE_INT: Final = {"type": ["integer", "null"]}
PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM_REF}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ERRORS: Final = {
    "400": _problem("bad parameters"),
    "401": _problem("no or unknown bearer token (TCP)"),
    "403": _problem("the caller's role or groups do not allow it"),
    "408": _problem("the request took longer than api.request_timeout_s"),
}
ID_PARAM: Final = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
LIMIT: Final = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}
CURSOR: Final = {"name": "cursor", "in": "query", "schema": {"type": "string"}}
STATES: Final = ["claiming", "claimed", "active", "done", "rejected", "abandoned"]

SUBMISSION_ROW: Final = {
    "type": "object",
    "required": ["id", "name", "route", "state", "outcome", "jobs", "requests", "completed"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "route": {"type": "string"},
        "state": {"enum": STATES},
        "outcome": {"type": ["string", "null"]},
        "jobs": {"type": ["integer", "array"]},
        "requests": {"type": "integer"},
        "completed": {"type": "integer"},
        "succeeded": {"type": "integer"},
        "failed": {"type": "integer"},
        "missing": NULLABLE_INT,
        "cancel_requested": {"type": "boolean"},
        "created": NULLABLE_STR,
        "finished": NULLABLE_STR,
        "results_dir": NULLABLE_STR,
        "reason": NULLABLE_STR,
    },
}
EVENT: Final = {
    "type": "object",
    "required": ["id", "type", "created", "data"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "created": NULLABLE_STR,
        "submission_id": NULLABLE_STR,
        "job_id": NULLABLE_STR,
        "data": {"type": "object"},
    },
}
ACCEPTED: Final = {
    "type": "object",
    "required": ["id", "name", "route", "state"],
    "properties": {
        "id": NULLABLE_STR,
        "name": {"type": "string"},
        "route": {"type": "string"},
        "state": {"type": "string"},
    },
}
PROBLEM: Final = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": NULLABLE_STR,
        },
    }


def _submissions() -> dict[str, Any]:
    post = {
        "summary": "Submit a batch file (JSONL) to a route's inbox",
        "parameters": [
            {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "route", "in": "query", "schema": {"type": "string"}},
            {
                "name": "options",
                "in": "query",
                "description": "the per-file options as JSON (the sidecar's keys)",
                "schema": {"type": "string"},
            },
            {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
        ],
        "requestBody": {
            "required": True,
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
        },
        "responses": {
            "202": _json("handed to the route's intake", _ref("Accepted")),
            **ERRORS,
            "404": _problem("no such route visible to the caller"),
            "409": _problem("a duplicate, or a file of that name waits in the inbox"),
            "413": _problem("larger than api.max_upload_bytes"),
            "422": _problem("an invalid batch file, options, or a reused Idempotency-Key"),
            "429": _problem("too many uploads at once"),
        },
    }
    get = {
        "summary": "Submissions, newest first",
        "parameters": [
            {
                "name": "state",
                "in": "query",
                "schema": {"type": "array", "items": {"enum": STATES}},
            },
            {"name": "route", "in": "query", "schema": {"type": "string"}},
            LIMIT,
            CURSOR,
        ],
        "responses": {"200": _json("a page", _page("SubmissionRow")), **ERRORS},
    }
    return {"get": get, "post": post}


def _one(summary: str, ok: dict[str, Any], method: str = "get") -> dict[str, Any]:
    return {
        method: {
            "summary": summary,
            "parameters": [ID_PARAM],
            "responses": {**ok, **ERRORS, "404": _problem("no such submission visible to you")},
        }
    }


def _text(media: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {}}}


def _jsonl(description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/jsonl": {}}}}


def spec() -> dict[str, Any]:
    health = {"200": _json("ok", {"type": "object"}), "503": _problem("not ready")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "batchd", "version": "1"},
        "components": {
            "schemas": {
                "SubmissionRow": SUBMISSION_ROW,
                "Event": EVENT,
                "Accepted": ACCEPTED,
                "Problem": PROBLEM,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {"summary": "The process is up", "security": [], "responses": health}
            },
            "/readyz": {
                "get": {"summary": "Store open, loops beating", "security": [], "responses": health}
            },
            "/v1/submissions": _submissions(),
            "/v1/submissions/{id}": _one(
                "One submission and its jobs", {"200": _json("it", _ref("SubmissionRow"))}
            ),
            "/v1/submissions/{id}/results": _one(
                "results.jsonl, streamed", _jsonl("in input order")
            ),
            "/v1/submissions/{id}/errors": _one(
                "errors.jsonl, streamed", _jsonl("failed requests")
            ),
            "/v1/submissions/{id}/cancel": _one(
                "Cancel (the owner, or admin)",
                {
                    "202": _json("cancel requested", _ref("SubmissionRow")),
                    "409": _problem("nothing left to cancel"),
                },
                method="post",
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (callers who see every route)",
                    "responses": {"200": _text("text/plain", "the text format"), **ERRORS},
                }
            },
            "/": {
                "get": {
                    "summary": "The dashboard (HTML)",
                    "responses": {"200": _text("text/html", "the overview"), **ERRORS},
                }
            },
            "/submissions/{id}": _one(
                "A submission's dashboard page", {"200": _text("text/html", "it")}
            ),
            "/v1/events/stream": {
                "get": {
                    "summary": "Events as Server-Sent Events, after cursor (or Last-Event-ID)",
                    "parameters": [CURSOR],
                    "responses": {"200": _text("text/event-stream", "never ends"), **ERRORS},
                    "x-streaming": True,
                }
            },
            "/v1/events": {
                "get": {
                    "summary": "Events, oldest first",
                    "parameters": [LIMIT, CURSOR],
                    "responses": {"200": _json("a page", _page("Event")), **ERRORS},
                }
            },
        },
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(spec())
