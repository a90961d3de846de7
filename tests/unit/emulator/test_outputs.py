"""Deterministic outputs: shapes the official SDK accepts, usage that matches the content."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from mistralai.client import models
from mistralai.extra import response_format_from_pydantic_model as response_format
from pydantic import BaseModel, Field

from batchd.emulator.outputs import (
    MAX_COMPLETION_TOKENS,
    MODERATION_CATEGORIES,
    STABLE_CREATED,
    Responder,
    compose,
    filler,
    render,
)

RESPONDER = Responder(default_max_tokens=16, embedding_dim=1024, created=STABLE_CREATED)


def respond(endpoint: str, body: dict[str, Any], model: str | None = "m") -> dict[str, Any]:
    _, out = RESPONDER.respond(endpoint, model, body)
    parsed: dict[str, Any] = json.loads(render(out))
    return parsed


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_filler_has_the_exact_word_count_and_wraps() -> None:
    assert filler(5, 0) == ""
    for count in (1, 7, 4096, 4097, 10_000):
        assert len(filler(123, count).split()) == count


def test_compose_echoes_the_prompt_then_fills() -> None:
    text = compose("what is the best cheese in France today", 12, b"\x00" * 16)

    words = text.split()
    prompt = ["what", "is", "the", "best", "cheese", "in", "France", "today"]
    assert len(words) == 12 and words[:8] == prompt
    assert compose("hello world", 1, b"\x00" * 16) == "hello"


def test_chat_completion_follows_max_tokens_with_consistent_usage() -> None:
    body = respond("/v1/chat/completions", chat("hello there friend", max_tokens=500))
    parsed = models.ChatCompletionResponse.model_validate(body)
    message = parsed.choices[0].message
    assert message is not None
    content = message.content
    assert isinstance(content, str) and len(content.split()) == 500
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 500, "total_tokens": 504}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["created"] == STABLE_CREATED and body["object"] == "chat.completion"
    default = respond("/v1/chat/completions", chat("hi"))
    assert default["usage"]["completion_tokens"] == 16
    assert default["choices"][0]["finish_reason"] == "stop"


def test_a_huge_max_tokens_stops_at_the_context_window() -> None:
    body = respond("/v1/chat/completions", chat("hi", max_tokens=30_000_000))
    assert body["usage"]["completion_tokens"] == MAX_COMPLETION_TOKENS
    assert len(body["choices"][0]["message"]["content"].split()) == MAX_COMPLETION_TOKENS
    assert body["choices"][0]["finish_reason"] == "length"


def test_same_request_same_bytes_different_request_different_output() -> None:
    one = render(RESPONDER.respond("/v1/chat/completions", "m", chat("a b c"))[1])
    assert one == render(RESPONDER.respond("/v1/chat/completions", "m", chat("a b c"))[1])
    assert one != render(RESPONDER.respond("/v1/chat/completions", "m", chat("a b d"))[1])
    body_model = render(
        RESPONDER.respond("/v1/chat/completions", None, chat("a b c", model="m"))[1]
    )
    assert json.loads(body_model)["model"] == "m"


def test_the_jobs_model_answers_a_body_naming_another() -> None:
    body = chat("a b c", model="mistral-medium-latest")
    _, response = RESPONDER.respond("/v1/chat/completions", "mistral-small-latest", body)
    assert response["model"] == "mistral-small-latest"


def test_multimodal_content_counts_text_chunks() -> None:
    content = [{"type": "text", "text": "describe this"}, {"type": "image_url", "image_url": "x"}]
    body = respond("/v1/chat/completions", {"messages": [{"role": "user", "content": content}]})
    assert body["usage"]["prompt_tokens"] == 3
    assert body["choices"][0]["message"]["content"].startswith("describe this")


def test_fim() -> None:
    body = respond(
        "/v1/fim/completions", {"prompt": "def f(", "suffix": "return x", "max_tokens": 5}
    )
    models.FIMCompletionResponse.model_validate(body)
    assert body["usage"]["completion_tokens"] == 5


def test_embeddings_are_fixed_dimension_unit_vectors() -> None:
    body = respond("/v1/embeddings", {"input": ["a", "b"]})
    parsed = models.EmbeddingResponse.model_validate(body)
    assert [d.index for d in parsed.data] == [0, 1]
    vector = body["data"][0]["embedding"]
    assert len(vector) == 1024
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, abs_tol=0.05)
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]
    assert respond("/v1/embeddings", {"input": "a"})["data"][0]["embedding"] == vector
    small = respond("/v1/embeddings", {"input": "a", "output_dimension": 8})
    assert len(small["data"][0]["embedding"]) == 8


@pytest.mark.parametrize(
    ("endpoint", "body", "n"),
    [
        ("/v1/moderations", {"input": ["x", "y"]}, 2),
        ("/v1/chat/moderations", {"input": [{"role": "user", "content": "x"}]}, 1),
        ("/v1/chat/moderations", {"input": [[{"role": "user", "content": "x"}]] * 3}, 3),
    ],
)
def test_moderations(endpoint: str, body: dict[str, Any], n: int) -> None:
    out = respond(endpoint, body)
    models.ModerationResponse.model_validate(out)
    assert len(out["results"]) == n
    for result in out["results"]:
        assert tuple(result["categories"]) == MODERATION_CATEGORIES
        assert tuple(result["category_scores"]) == MODERATION_CATEGORIES


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/classifications", {"input": "great"}),
        ("/v1/chat/classifications", {"input": [{"role": "user", "content": "x"}]}),
    ],
)
def test_classifications(endpoint: str, body: dict[str, Any]) -> None:
    out = respond(endpoint, body)
    models.ClassificationResponse.model_validate(out)
    scores = out["results"][0]["sentiment"]["scores"]
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-4)


def test_other_endpoints_have_sdk_shapes() -> None:
    models.OCRResponse.model_validate(
        respond("/v1/ocr", {"document": {"type": "document_url", "document_url": "u"}})
    )
    models.ConversationResponse.model_validate(respond("/v1/conversations", {"inputs": "hello"}))
    models.TranscriptionResponse.model_validate(
        respond("/v1/audio/transcriptions", {"file_url": "https://x"})
    )


def test_render_inserts_raw_json_only_where_placed() -> None:
    body = respond("/v1/embeddings", {"input": "x"}, model="m")
    assert body["model"] == "m" and isinstance(body["data"][0]["embedding"][0], float)


DOC = {"type": "document_url", "document_url": "https://example.com/doc.pdf"}


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        (None, [0]),
        ([0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7]),
        ([5, 2, 5], [2, 5]),
        ("0,2-4", [0, 2, 3, 4]),
        (" 7 , 1 - 2 ", [1, 2, 7]),
    ],
)
def test_ocr_answers_the_pages_asked_for(pages: Any, expected: list[int]) -> None:
    body: dict[str, Any] = {"document": DOC} | ({} if pages is None else {"pages": pages})
    out = respond("/v1/ocr", body, model="mistral-ocr-latest")
    parsed = models.OCRResponse.model_validate(out)
    assert [p.index for p in parsed.pages] == expected
    assert parsed.usage_info.pages_processed == len(expected)
    assert len({p.markdown for p in parsed.pages}) == len(expected)  # a different page each
    assert parsed.document_annotation is None  # no format asked for


class Table(BaseModel):
    name: str = Field(description="The name or title of the table")


class TableExtraction(BaseModel):
    tables: list[Table] = Field(description="List of tables found in the document")


def test_ocr_document_annotation_fits_the_requested_format() -> None:
    body = {"document": DOC, "document_annotation_format": response_format(TableExtraction)}
    out = respond("/v1/ocr", body, model="mistral-ocr-latest")
    annotation = models.OCRResponse.model_validate(out).document_annotation
    assert isinstance(annotation, str)
    tables = TableExtraction.model_validate_json(annotation)  # what the SDK example does
    assert tables.tables and all(t.name for t in tables.tables)
    as_object = respond(
        "/v1/ocr", {"document": DOC, "document_annotation_format": {"type": "json_object"}}
    )
    assert isinstance(json.loads(as_object["document_annotation"]), dict)
    as_text = respond("/v1/ocr", {"document": DOC, "document_annotation_format": {"type": "text"}})
    assert as_text["document_annotation"] is None
