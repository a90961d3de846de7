"""Request and batch messages: what is accepted, and the one-line reason for what is not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchd.queues.messages import (
    BATCH_SCHEMA,
    NAME_HEADER,
    REQUEST_SCHEMA,
    ROUTE_HEADER,
    Bad,
    Batch,
    Limits,
    Request,
    parse_message,
)

ROUTES = {"docs": "/v1/chat/completions", "emb": "/v1/embeddings"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def parse(value: Any, headers: dict[str, Any] | None = None, **kw: Any) -> Any:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    kw.setdefault("default_route", "docs")
    return parse_message(data, headers or {}, routes=ROUTES, **kw)


def test_a_request_becomes_its_normalized_batch_line() -> None:
    got = parse({"custom_id": "a-1", "body": BODY, "reply_to": "res", "metadata": {"t": "x"}})
    assert isinstance(got, Request)
    assert (got.custom_id, got.route, got.reply_to, got.metadata) == (
        "a-1",
        "docs",
        "res",
        {"t": "x"},
    )
    assert json.loads(got.line) == {"custom_id": "a-1", "body": BODY}
    assert got.line.endswith(b"\n")


def test_the_message_route_wins_over_the_default() -> None:
    got = parse({"custom_id": "a", "body": {"input": "x"}, "route": "emb"})
    assert isinstance(got, Request)
    assert got.route == "emb"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        ({"body": BODY}, "missing custom_id"),
        ({"custom_id": "", "body": BODY}, "custom_id must be a string"),
        ({"custom_id": 7, "body": BODY}, "custom_id must be a string"),
        ({"custom_id": "a", "body": BODY, "route": "nope"}, "unknown route 'nope'"),
        ({"custom_id": "a", "body": "text"}, "body must be a JSON object"),
        ({"custom_id": "a"}, "missing body"),
        ({"custom_id": "a", "body": BODY, "extra": 1}, "unknown key(s) 'extra'"),
        ({"custom_id": "a", "body": BODY, "reply_to": 3}, "reply_to must be a string"),
        ({"custom_id": "a", "body": BODY, "metadata": {"k": 1}}, "metadata must be an object"),
    ],
)
def test_a_bad_request_is_refused_with_a_reason(message: Any, reason: str) -> None:
    got = parse(message)
    assert isinstance(got, Bad)
    assert reason in got.reason


def test_no_route_anywhere_is_a_bad_message() -> None:
    got = parse({"custom_id": "a", "body": BODY}, default_route=None)
    assert isinstance(got, Bad)
    assert "no route" in got.reason


def test_a_request_over_the_limit_is_refused_without_echoing_it() -> None:
    secret = "x" * 2000
    got = parse({"custom_id": "a", "body": {"p": secret}}, limits=Limits(max_request_bytes=1000))
    assert isinstance(got, Bad)
    assert "over max_request_bytes (1000)" in got.reason
    assert secret not in got.reason


def test_a_batch_object_becomes_jsonl_checked_later_like_a_file() -> None:
    lines = [{"custom_id": "a", "body": BODY}, {"body": BODY}]
    got = parse({"name": "nightly.jsonl", "lines": lines, "route": "docs"})
    assert isinstance(got, Batch)
    assert (got.name, got.route) == ("nightly.jsonl", "docs")
    assert [json.loads(x) for x in got.data.splitlines()] == lines


def test_a_jsonl_body_is_a_batch_named_by_its_headers() -> None:
    data = b'{"custom_id": "a", "body": {"input": "x"}}\n'
    got = parse(data, {NAME_HEADER: b"e.jsonl", ROUTE_HEADER: "emb"})
    assert got == Batch("e.jsonl", "emb", data)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"name": "a b.jsonl", "lines": [{"body": {}}]}, "batch name missing or not allowed"),
        ({"lines": [{"body": {}}]}, "batch name missing or not allowed"),
        ({"name": "x.jsonl", "lines": []}, "lines must be a non-empty array"),
        ({"name": "x.jsonl", "lines": [{"body": {}}], "route": "zz"}, "unknown route 'zz'"),
        ({"name": "x.jsonl", "lines": [{"body": {}}], "extra": 1}, "unknown key(s) 'extra'"),
    ],
)
def test_a_bad_batch_is_refused_with_a_reason(message: Any, reason: str) -> None:
    got = parse(message)
    assert isinstance(got, Bad)
    assert reason in got.reason


def test_a_batch_over_its_line_limit_is_refused() -> None:
    got = parse({"name": "x.jsonl", "lines": [{"body": {}}] * 3}, limits=Limits(max_batch_lines=2))
    assert isinstance(got, Bad)
    assert "3 lines is over the limit of 2" in got.reason


def test_the_schemas_name_the_keys_the_parser_accepts() -> None:
    from batchd.queues.messages import BATCH_KEYS, REQUEST_KEYS

    assert set(REQUEST_SCHEMA["properties"]) == REQUEST_KEYS
    assert set(BATCH_SCHEMA["properties"]) == BATCH_KEYS
    assert REQUEST_SCHEMA["required"] == ["custom_id", "body"]
