"""Per-request validation: which bodies each endpoint refuses, and how."""

from __future__ import annotations

from typing import Any

import pytest

from batchd.emulator.requests import check

USER = {"role": "user", "content": "x"}


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/chat/completions", {"messages": [USER]}),
        (
            "/v1/chat/completions",
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": "", "tool_calls": [{}]},
                    {"role": "tool", "content": "r"},
                ]
            },
        ),
        (
            "/v1/chat/completions",
            {"messages": [USER, {"role": "assistant", "content": "pre", "prefix": True}]},
        ),
        ("/v1/fim/completions", {"prompt": "def", "max_tokens": 0}),
        ("/v1/embeddings", {"input": ["a", "b"]}),
        ("/v1/moderations", {"input": "a"}),
        ("/v1/classifications", {"input": "a"}),
        ("/v1/chat/moderations", {"input": [[USER], [USER]]}),
        ("/v1/chat/classifications", {"input": [USER]}),
        ("/v1/ocr", {"document": {"type": "document_url", "document_url": "u"}}),
        ("/v1/ocr", {"document": {}, "pages": [0, 3], "document_annotation_format": None}),
        ("/v1/ocr", {"document": {}, "pages": "0,2-4"}),
        (
            "/v1/ocr",
            {
                "document": {},
                "document_annotation_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
                },
            },
        ),
        ("/v1/conversations", {"inputs": "hello"}),
        ("/v1/audio/transcriptions", {"file_url": "https://x"}),
    ],
)
def test_valid_bodies(endpoint: str, body: dict[str, Any]) -> None:
    assert check(endpoint, "m", body) is None


@pytest.mark.parametrize(
    ("endpoint", "model", "body", "status", "kind"),
    [
        ("/v1/chat/completions", None, {"messages": [USER]}, 422, "missing"),
        ("/v1/chat/completions", "m", {"model": 3, "messages": [USER]}, 422, "string_type"),
        ("/v1/chat/completions", "m", {}, 422, "missing"),
        ("/v1/chat/completions", "m", {"messages": "hi"}, 422, "list_type"),
        ("/v1/chat/completions", "m", {"messages": []}, 422, "too_short"),
        ("/v1/chat/completions", "m", {"messages": [{"role": "robot"}]}, 422, "union_tag_invalid"),
        (
            "/v1/chat/completions",
            "m",
            {"messages": [{"role": "system", "content": "s"}]},
            400,
            None,
        ),
        ("/v1/chat/completions", "m", {"messages": [USER, {"role": "assistant"}]}, 400, None),
        ("/v1/chat/completions", "m", {"messages": [USER], "max_tokens": True}, 422, "int_type"),
        (
            "/v1/chat/completions",
            "m",
            {"messages": [USER], "max_tokens": -1},
            422,
            "greater_than_equal",
        ),
        ("/v1/fim/completions", "m", {}, 422, "missing"),
        ("/v1/fim/completions", "m", {"prompt": 1}, 422, "string_type"),
        ("/v1/embeddings", "m", {}, 422, "missing"),
        ("/v1/embeddings", "m", {"input": [1]}, 422, "string_type"),
        ("/v1/embeddings", "m", {"input": []}, 422, "string_type"),
        ("/v1/chat/moderations", "m", {"input": "x"}, 422, "list_type"),
        ("/v1/chat/moderations", "m", {"input": [[]]}, 422, "list_type"),
        ("/v1/chat/moderations", "m", {}, 422, "missing"),
        ("/v1/ocr", "m", {}, 422, "missing"),
        ("/v1/ocr", "m", {"document": "x"}, 422, "model_type"),
        ("/v1/ocr", "m", {"document": {}, "pages": [-1]}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": [True]}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": []}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": "3-1"}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": "one"}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": "0-99999999"}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "pages": list(range(1001))}, 422, "value_error"),
        ("/v1/ocr", "m", {"document": {}, "document_annotation_format": 1}, 422, "model_type"),
        (
            "/v1/ocr",
            "m",
            {"document": {}, "document_annotation_format": {"type": "yaml"}},
            422,
            "enum",
        ),
        (
            "/v1/ocr",
            "m",
            {"document": {}, "document_annotation_format": {"type": "json_schema"}},
            422,
            "missing",
        ),
        ("/v1/conversations", "m", {}, 422, "missing"),
        ("/v1/conversations", "m", {"inputs": 5}, 422, "string_type"),
        ("/v1/audio/transcriptions", "m", {}, 400, None),
    ],
)
def test_refused_bodies(
    endpoint: str, model: str | None, body: dict[str, Any], status: int, kind: str | None
) -> None:
    problem = check(endpoint, model, body)
    assert problem is not None and problem.status == status
    assert problem.body["object"] == "error" and problem.body["type"] == "invalid_request_error"
    assert problem.message
    if status == 422:  # the wrapped FastAPI shape seen from api.mistral.ai
        (item,) = problem.body["message"]["detail"]
        assert item["type"] == kind and item["loc"][0] == "body"
    else:
        assert isinstance(problem.body["message"], str)


def test_conversations_and_ocr_need_no_model() -> None:
    assert check("/v1/conversations", None, {"inputs": "x"}) is None
    assert check("/v1/ocr", None, {"document": {}}) is None


def test_a_body_naming_another_model_than_the_job_is_accepted() -> None:
    """Mistral's own inline example (job mistral-small-latest, bodies mistral-medium-latest)
    runs against the real API in the SDK's CI: the body's model is not refused."""
    body = {"model": "mistral-medium-latest", "messages": [USER]}
    assert check("/v1/chat/completions", "mistral-small-latest", body) is None
