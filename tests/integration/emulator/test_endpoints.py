"""Every batch endpoint end to end: valid bodies give that endpoint's response object, an
invalid body gives a per-request error line (never a failed job)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.emulator.helpers import Api

USER = {"role": "user", "content": "is this fine"}

CASES: list[tuple[str, dict[str, Any], set[str], dict[str, Any]]] = [
    (
        "/v1/chat/completions",
        {"messages": [USER], "max_tokens": 7},
        {"id", "object", "model", "usage", "created", "choices"},
        {"messages": []},
    ),
    (
        "/v1/fim/completions",
        {"prompt": "def add(a, b):", "suffix": "return c"},
        {"id", "object", "model", "usage", "created", "choices"},
        {"suffix": "x"},
    ),
    (
        "/v1/embeddings",
        {"input": ["one", "two"]},
        {"id", "object", "data", "model", "usage"},
        {"input": 3},
    ),
    ("/v1/moderations", {"input": "text"}, {"id", "model", "results"}, {}),
    ("/v1/chat/moderations", {"input": [USER]}, {"id", "model", "results"}, {"input": "x"}),
    ("/v1/classifications", {"input": ["a"]}, {"id", "model", "results"}, {"input": []}),
    ("/v1/chat/classifications", {"input": [USER]}, {"id", "model", "results"}, {}),
    (
        "/v1/ocr",
        {"document": {"type": "document_url", "document_url": "https://x/a.pdf"}},
        {"pages", "model", "document_annotation", "usage_info"},
        {"document": "x"},
    ),
    (
        "/v1/conversations",
        {"inputs": "hello"},
        {"object", "conversation_id", "outputs", "usage"},
        {},
    ),
    (
        "/v1/audio/transcriptions",
        {"file_url": "https://x/a.mp3"},
        {"model", "text", "language", "segments", "usage"},
        {"language": "fr"},
    ),
]


@pytest.mark.parametrize(("endpoint", "good", "keys", "bad"), CASES)
async def test_endpoint_outputs_and_errors(
    api: Api, endpoint: str, good: dict[str, Any], keys: set[str], bad: dict[str, Any]
) -> None:
    job = await api.create(
        endpoint=endpoint,
        requests=[{"custom_id": "good", "body": good}, {"custom_id": "bad", "body": bad}],
    )
    done = await api.finish(job["id"])
    assert done["status"] == "SUCCESS"
    assert (done["succeeded_requests"], done["failed_requests"]) == (1, 1)
    (ok,) = await api.lines(done["output_file"])
    (error,) = await api.lines(done["error_file"])
    assert ok["custom_id"] == "good" and set(ok["response"]["body"]) == keys
    assert error["custom_id"] == "bad" and error["response"]["status_code"] in {400, 422}
    assert error["response"]["body"]["object"] == "error"
    again = await api.create(endpoint=endpoint, requests=[{"custom_id": "good", "body": good}])
    (repeat,) = await api.lines((await api.finish(again["id"]))["output_file"])
    assert repeat == ok  # same request, same output
