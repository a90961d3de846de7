"""The OpenAI emulator's batch behaviour over raw HTTP: file rules that fail a batch, per-line
failures, expiry and cancel with partial results, cursor pages, the enqueued-token limit, and
faults in OpenAI's error shape."""

from __future__ import annotations

import json
from dataclasses import replace

import aiohttp

from batchd.emulator import FaultRule
from batchd.emulator.faults import FaultKind
from batchd.emulator.openai import OpenAIOptions, serve_openai
from tests.integration.emulator_openai.helpers import (
    AUTH,
    CHAT,
    STEPPED,
    Api,
    chat_file,
    chat_line,
    jsonl,
    stepped_config,
)


async def test_a_non_json_line_fails_the_batch_with_its_line(api: Api) -> None:
    content = jsonl([chat_line("a", "hi"), "{not json", chat_line("b", "hi")])
    batch = await api.finish((await api.create(content))["id"])
    assert batch["status"] == "failed"
    assert batch["errors"] == {
        "object": "list",
        "data": [
            {
                "code": "invalid_json_line",
                "line": 2,
                "message": "This line is not parseable as valid JSON.",
                "param": None,
            }
        ],
    }
    assert batch["failed_at"] is not None and batch["in_progress_at"] is None
    assert (batch["output_file_id"], batch["error_file_id"]) == (None, None)


async def test_file_rules_each_fail_the_batch(api: Api) -> None:
    wrong_url = {**chat_line("b", "x"), "url": "/v1/embeddings"}
    cases = {
        "duplicate_custom_id": [chat_line("a", "x"), chat_line("a", "y")],
        "url_mismatch": [chat_line("a", "x"), wrong_url],
        "model_mismatch": [chat_line("a", "x"), chat_line("b", "y", model="gpt-4o")],
        "missing_required_parameter": [{"method": "POST", "url": CHAT, "body": {}}],
    }
    for code, lines in cases.items():
        batch = await api.finish((await api.create(jsonl(lines)))["id"])
        assert batch["status"] == "failed", code
        assert [e["code"] for e in batch["errors"]["data"]] == [code]
    empty = await api.finish((await api.create(b"\n"))["id"])
    assert [e["code"] for e in empty["errors"]["data"]] == ["empty_file"]


async def test_an_invalid_body_fails_only_its_line(api: Api) -> None:
    bad = {**chat_line("bad", "x"), "body": {"model": "gpt-4o-mini", "messages": []}}
    batch = await api.finish((await api.create(jsonl([chat_line("ok", "hi"), bad])))["id"])
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    (ok,) = await api.lines(batch["output_file_id"])
    assert ok["id"].startswith("batch_req_")
    assert ok["response"]["body"]["object"] == "chat.completion"
    assert ok["response"]["body"]["usage"]["completion_tokens"] == 16
    (err,) = await api.lines(batch["error_file_id"])
    assert err["error"] is None
    assert err["response"]["status_code"] == 400
    assert err["response"]["body"]["error"]["param"] == "messages"


async def test_an_expired_batch_keeps_its_partial_output() -> None:
    slow = replace(STEPPED, request_s=10_000)  # 10 requests take 100,000 s: past the 24 h
    async with serve_openai(stepped_config(processing=slow)) as emu, aiohttp.ClientSession() as s:
        api = Api(s, emu)
        batch = await api.create(chat_file(10))
        await emu.settle()
        emu.advance(24 * 3600)
        ended = await api.finish(batch["id"])
        output = await api.lines(ended["output_file_id"])
        unprocessed = await api.lines(ended["error_file_id"])
    assert ended["status"] == "expired"
    assert ended["expired_at"] is not None
    # 8 of the 10 requests ran in the 86,390 s between validation and the deadline
    assert ended["request_counts"] == {"total": 10, "completed": 8, "failed": 2}
    assert len(output) == 8
    assert [e["error"]["code"] for e in unprocessed] == ["batch_expired"] * 2
    assert all(e["response"] is None for e in unprocessed)


async def test_cancel_goes_through_cancelling_with_partial_results(api: Api) -> None:
    batch = await api.create(chat_file(10))
    await api.emu.settle()
    api.emu.advance(10 + 2 * 10 + 1)
    cancelling = await api.ok("POST", f"/v1/batches/{batch['id']}/cancel")
    assert cancelling["status"] == "cancelling"
    assert cancelling["request_counts"] == {"total": 10, "completed": 2, "failed": 0}
    ended = await api.finish(batch["id"])
    assert ended["status"] == "cancelled"
    assert ended["request_counts"] == {"total": 10, "completed": 2, "failed": 8}
    assert len(await api.lines(ended["output_file_id"])) == 2
    codes = {e["error"]["code"] for e in await api.lines(ended["error_file_id"])}
    assert codes == {"batch_cancelled"}


async def test_batches_list_cursor_is_exclusive_and_says_has_more(api: Api) -> None:
    file_id = await api.upload(chat_file(1))
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    ids = [(await api.ok("POST", "/v1/batches", json=body))["id"] for _ in range(3)]
    first = await api.ok("GET", "/v1/batches", params={"limit": "2"})
    assert [b["id"] for b in first["data"]] == [ids[2], ids[1]]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[2], ids[1])
    rest = await api.ok("GET", "/v1/batches", params={"limit": "2", "after": ids[1]})
    assert [b["id"] for b in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    status, error, _ = await api.call("GET", "/v1/batches", params={"limit": "101"})
    assert status == 400 and error["error"]["param"] == "limit"


async def test_create_is_strict(api: Api) -> None:
    file_id = await api.upload(chat_file(1))
    base = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    refused = {
        "completion_window": {**base, "completion_window": "48h"},
        "endpoint": {**base, "endpoint": "/v1/bogus"},
        "metadata": {**base, "metadata": {"k" * 65: "v"}},
        "input_file_id": {**base, "input_file_id": "file-unknown"},
        None: {**base, "model": "gpt-4o"},
    }
    for param, body in refused.items():
        status, error, resp = await api.call("POST", "/v1/batches", json=body)
        assert status == 400, body
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == param
        assert resp.headers["x-request-id"].startswith("req_")
    assert api.emu.jobs() == []


async def test_enqueued_token_limit_fails_the_batch_that_passes_it() -> None:
    options = OpenAIOptions(enqueued_token_limit=200)
    async with serve_openai(stepped_config(), options=options) as emu, aiohttp.ClientSession() as s:
        api = Api(s, emu)
        first = await api.create(chat_file(3, max_tokens=40))
        second = await api.create(chat_file(3, max_tokens=40))
        assert (await api.finish(first["id"]))["status"] == "completed"
        failed = await api.finish(second["id"])
        assert failed["status"] == "failed"
        assert [e["code"] for e in failed["errors"]["data"]] == ["token_limit_exceeded"]
        third = await api.finish((await api.create(chat_file(3, max_tokens=40)))["id"])
        assert third["status"] == "completed"  # the first no longer holds its tokens


async def test_faults_and_auth_answer_in_openai_shape(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.RATE_LIMIT, route="GET /v1/batches", retry_after_s=3)])
    status, body, resp = await api.call("GET", "/v1/batches")
    assert status == 429
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert resp.headers["Retry-After"] == "3"
    assert resp.headers["x-request-id"].startswith("req_")
    status, body, _ = await api.call("GET", "/v1/files", headers={"Authorization": "Bearer nope"})
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert "nope" not in json.dumps(body)
    status, body, _ = await api.call("GET", "/v1/nowhere")
    assert (status, body["error"]["message"]) == (404, "Invalid URL (GET /v1/nowhere)")


async def test_organization_and_project_headers_are_seen(api: Api) -> None:
    headers = {**AUTH, "OpenAI-Organization": "org-1", "OpenAI-Project": "proj-1"}
    await api.call("GET", "/v1/files", headers=headers)
    assert api.emu.headers_seen() == {
        ("openai-organization", "org-1"): 1,
        ("openai-project", "proj-1"): 1,
    }
