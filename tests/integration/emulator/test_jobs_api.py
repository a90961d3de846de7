"""Batch jobs API over real HTTP: create (validation), list (every filter), get, delete."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from batchd.emulator import Behaviour, serve
from tests.integration.emulator.helpers import STEPPED, Api, chat_file, chat_line, stepped_config

JOB_KEYS = {
    "id",
    "object",
    "input_files",
    "metadata",
    "endpoint",
    "model",
    "agent_id",
    "output_file",
    "error_file",
    "errors",
    "outputs",
    "status",
    "created_at",
    "total_requests",
    "completed_requests",
    "succeeded_requests",
    "failed_requests",
    "started_at",
    "completed_at",
}


async def test_create_from_files_returns_a_queued_job(api: Api) -> None:
    f1 = await api.upload(chat_file(2))
    f2 = await api.upload(chat_file(3))
    job = await api.create(
        input_files=[f1["id"], f2["id"]], metadata={"batchd_job": "abc"}, agent_id="ag"
    )
    assert set(job) == JOB_KEYS
    assert uuid.UUID(job["id"]).version == 4
    assert job | {"id": None, "created_at": None} == {
        "id": None,
        "object": "batch",
        "input_files": [f1["id"], f2["id"]],
        "metadata": {"batchd_job": "abc"},
        "endpoint": "/v1/chat/completions",
        "model": "m",
        "agent_id": "ag",
        "output_file": None,
        "error_file": None,
        "errors": [],
        "outputs": None,
        "status": "QUEUED",
        "created_at": None,
        "total_requests": 0,
        "completed_requests": 0,
        "succeeded_requests": 0,
        "failed_requests": 0,
        "started_at": None,
        "completed_at": None,
    }
    await api.emu.settle()
    api.emu.advance(10.5)
    running = await api.job(job["id"])
    assert running["status"] == "RUNNING" and running["total_requests"] == 5


async def test_create_inline_requests(api: Api) -> None:
    job = await api.create(requests=[chat_line("a", "hi"), {"body": chat_line("b", "x")["body"]}])
    assert job["input_files"] == [] and job["status"] == "QUEUED"
    done = await api.finish(job["id"])
    assert done["total_requests"] == 2 and done["succeeded_requests"] == 2
    assert sorted(o["custom_id"] for o in done["outputs"]) == ["1", "a"]


async def test_timeout_hours_defaults_to_24_and_is_bounded(session) -> None:
    # 900 requests at 100 emulated seconds each need 25 h: the default 24 h deadline stops it.
    slow = dataclasses.replace(STEPPED, request_s=100)
    async with serve(stepped_config(processing=slow)) as emu:
        await _check_default_timeout(Api(session, emu))


async def _check_default_timeout(api: Api) -> None:
    body: dict[str, Any] = {
        "endpoint": "/v1/embeddings",
        "model": "m",
        "requests": [{"body": {"input": "x"}}] * 900,
    }
    job = await api.ok("POST", "/v1/batch/jobs", json=body)
    await api.emu.settle()
    api.emu.advance(24 * 3600 + 10)
    await api.emu.settle()
    ended = await api.job(job["id"])
    assert ended["status"] == "TIMEOUT_EXCEEDED"
    assert 24 * 3600 <= ended["completed_at"] - ended["created_at"] <= 24 * 3600 + 60
    assert ended["completed_requests"] == 863  # 24 h of 100 s requests, minus the 10 s queue
    for hours in (0, 169):
        status, resp, _ = await api.call(
            "POST", "/v1/batch/jobs", json={**body, "timeout_hours": hours}
        )
        assert status == 422
        assert resp["detail"][0]["loc"] == ["body", "timeout_hours"]
        assert resp["detail"][0]["type"] in {"greater_than_equal", "less_than_equal"}


def _types(body: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [(d["type"], d["loc"]) for d in body["detail"]]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"endpoint": "/v1/nope", "requests": [{"body": {}}]}, [("enum", ["body", "endpoint"])]),
        ({"requests": [{"body": {}}]}, [("missing", ["body", "endpoint"])]),
        ({"endpoint": "/v1/embeddings"}, [("value_error", ["body"])]),
        ({"endpoint": "/v1/embeddings", "requests": []}, [("value_error", ["body"])]),
        (
            {"endpoint": "/v1/embeddings", "requests": [{"custom_id": "a"}]},
            [("missing", ["body", "requests", 0, "body"])],
        ),
        (
            {"endpoint": "/v1/embeddings", "input_files": ["nope"]},
            [("uuid_parsing", ["body", "input_files", 0])],
        ),
        (
            {"endpoint": "/v1/embeddings", "requests": [{"body": {}}], "store": True},
            [("extra_forbidden", ["body", "store"])],
        ),
        (
            {"endpoint": "/v1/embeddings", "requests": [{"body": {}}], "metadata": {"k" * 33: "v"}},
            [("string_too_long", ["body", "metadata", "k" * 33, "[key]"])],
        ),
        (
            {"endpoint": "/v1/embeddings", "requests": [{"body": {}}], "metadata": {"k": ""}},
            [("string_too_short", ["body", "metadata", "k"])],
        ),
        (
            {
                "endpoint": "/v1/embeddings",
                "requests": [{"body": {}}],
                "metadata": {"k": "v" * 513},
            },
            [("string_too_long", ["body", "metadata", "k"])],
        ),
        (
            {"endpoint": "/v1/embeddings", "requests": [{"body": {}}], "timeout_hours": "x"},
            [("int_parsing", ["body", "timeout_hours"])],
        ),
    ],
)
async def test_create_validation_is_fastapi_422(
    api: Api, payload: dict[str, Any], expected: list[Any]
) -> None:
    status, body, _ = await api.call("POST", "/v1/batch/jobs", json=payload)
    assert status == 422, body
    assert _types(body) == expected
    assert all(set(d) <= {"type", "loc", "msg", "input", "ctx"} for d in body["detail"])
    assert api.emu.jobs() == []


async def test_create_body_parsing_errors(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/batch/jobs", data=b"{bad")
    assert status == 422 and body["detail"][0]["type"] == "json_invalid"
    assert body["detail"][0]["loc"] == ["body", 1]
    status, body, _ = await api.call("POST", "/v1/batch/jobs", data=b"")
    assert status == 422 and _types(body) == [("missing", ["body"])]


async def test_inline_requests_are_limited_to_10000(api: Api) -> None:
    requests = [{"body": {"input": "x"}}] * 10_001
    status, body, _ = await api.call(
        "POST", "/v1/batch/jobs", json={"endpoint": "/v1/embeddings", "requests": requests}
    )
    assert status == 422
    assert body["detail"][0]["type"] == "too_long"
    assert body["detail"][0]["loc"] == ["body", "requests"]
    job = await api.create(endpoint="/v1/embeddings", requests=requests[:10_000])
    await api.emu.settle()
    api.emu.advance(11)
    assert (await api.job(job["id"]))["total_requests"] == 10_000


async def test_unknown_input_file_is_404(api: Api) -> None:
    status, body, _ = await api.call(
        "POST",
        "/v1/batch/jobs",
        json={"endpoint": "/v1/chat/completions", "input_files": [str(uuid.uuid4())]},
    )
    assert status == 404 and body["object"] == "error"


async def test_get_unknown_and_malformed_job(api: Api) -> None:
    status, body, _ = await api.call("GET", f"/v1/batch/jobs/{uuid.uuid4()}")
    assert status == 404 and set(body) == {"object", "message", "type", "param", "code"}
    status, body, _ = await api.call("POST", "/v1/batch/jobs/abc/cancel")
    assert status == 422 and _types(body) == [("uuid_parsing", ["path", "job_id"])]
    status, body, _ = await api.call("GET", "/v1/batch/jobs/x", params={"inline": "maybe"})
    assert status == 422


async def test_delete_job(api: Api) -> None:
    job = await api.create(requests=[chat_line("a", "hi")])
    deleted = await api.ok("DELETE", f"/v1/batch/jobs/{job['id']}")
    assert deleted == {"id": job["id"], "object": "batch", "deleted": True}
    status, _, _ = await api.call("GET", f"/v1/batch/jobs/{job['id']}")
    assert status == 404
    listing = await api.ok("GET", "/v1/batch/jobs")
    assert listing["total"] == 0
    status, _, _ = await api.call("DELETE", f"/v1/batch/jobs/{job['id']}")
    assert status == 404


# ------------------------------------------------------------------------------------ list
async def _ids(api: Api, params: Any) -> tuple[list[str], int]:
    body = await api.ok("GET", "/v1/batch/jobs", params=params)
    assert body["object"] == "list"
    return [j["id"] for j in body["data"]], body["total"]


async def test_list_pagination_order_and_total(api: Api) -> None:
    ids = []
    for i in range(7):
        ids.append((await api.create(requests=[chat_line(str(i), "x")]))["id"])
        api.emu.advance(1)
    assert await _ids(api, {}) == (ids[::-1], 7)
    assert await _ids(api, {"page": 0, "page_size": 3, "order_by": "-created"}) == (
        ids[::-1][:3],
        7,
    )
    assert await _ids(api, {"page": 2, "page_size": 3, "order_by": "created"}) == (ids[6:], 7)
    assert await _ids(api, {"page": 5, "page_size": 3}) == ([], 7)
    status, body, _ = await api.call("GET", "/v1/batch/jobs", params={"order_by": "name"})
    assert status == 422 and _types(body) == [("enum", ["query", "order_by"])]


async def test_list_filters_model_agent_metadata(api: Api) -> None:
    a = await api.create(requests=[chat_line("a", "x")], metadata={"batchd_job": "1", "team": "x"})
    b = await api.create(requests=[chat_line("a", "x")], metadata={"batchd_job": "2", "team": "x"})
    c = await api.create(requests=[chat_line("a", "x")], model="other", agent_id="ag")
    assert await _ids(api, {"batchd_job": "1"}) == ([a["id"]], 1)  # exploded, as the SDK sends
    assert await _ids(api, {"team": "x"}) == ([b["id"], a["id"]], 2)
    assert await _ids(api, {"team": "x", "batchd_job": "2"}) == ([b["id"]], 1)
    assert await _ids(api, {"metadata": json.dumps({"batchd_job": "2"})}) == ([b["id"]], 1)
    assert await _ids(api, {"batchd_job": "3"}) == ([], 0)
    assert await _ids(api, {"model": "other"}) == ([c["id"]], 1)
    assert await _ids(api, {"agent_id": "ag"}) == ([c["id"]], 1)
    status, body, _ = await api.call("GET", "/v1/batch/jobs", params={"metadata": "{x"})
    assert status == 422 and body["detail"][0]["loc"] == ["query", "metadata"]


async def test_list_filters_status_created_after_created_by_me(session) -> None:
    config = stepped_config(api_keys=("k1", "k2"))
    async with serve(config) as emu:
        api = Api(session, emu)
        other = {"Authorization": "Bearer k2"}
        mine = {"Authorization": "Bearer k1"}
        old = await api.ok(
            "POST",
            "/v1/batch/jobs",
            headers=mine,
            json={"endpoint": "/v1/embeddings", "requests": [{"body": {}}]},
        )
        await emu.settle()
        emu.advance(3600)
        await emu.settle()
        cutoff = datetime.fromtimestamp(emu.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = await api.ok(
            "POST",
            "/v1/batch/jobs",
            headers=other,
            json={"endpoint": "/v1/embeddings", "requests": [{"body": {}}]},
        )
        await emu.settle()
        ids = await _ids_as(api, mine, [("created_after", cutoff)])
        assert ids == ([new["id"]], 1)
        assert await _ids_as(api, mine, [("created_by_me", "true")]) == ([old["id"]], 1)
        assert await _ids_as(api, other, [("created_by_me", "true")]) == ([new["id"]], 1)
        assert (await _ids_as(api, mine, [("created_by_me", "false")]))[1] == 2
        assert await _ids_as(api, mine, [("status", "SUCCESS")]) == ([old["id"]], 1)
        assert await _ids_as(api, mine, [("status", "RUNNING")]) == ([], 0)
        both = [("status", "SUCCESS"), ("status", "QUEUED")]
        assert (await _ids_as(api, mine, both))[1] == 2
        for params in ([("status", "DONE")], [("created_after", "yesterday")]):
            status, body, _ = await api.call("GET", "/v1/batch/jobs", headers=mine, params=params)
            assert status == 422 and body["detail"][0]["loc"][0] == "query"


async def _ids_as(api: Api, headers: dict[str, str], params: Any) -> tuple[list[str], int]:
    body = await api.ok("GET", "/v1/batch/jobs", headers=headers, params=params)
    return [j["id"] for j in body["data"]], body["total"]


async def test_get_inline_outputs(api: Api) -> None:
    f = await api.upload(chat_file(2))
    from_file = await api.create(input_files=[f["id"]])
    inline = await api.create(requests=[chat_line("a", "hi")])
    assert (await api.job(inline["id"]))["outputs"] is None  # not terminal yet
    await api.finish(from_file["id"])
    await api.finish(inline["id"])
    assert (await api.job(from_file["id"]))["outputs"] is None
    assert len((await api.job(from_file["id"], inline="true"))["outputs"]) == 2
    assert (await api.job(inline["id"], inline="false"))["outputs"] is None
    outputs = (await api.job(inline["id"]))["outputs"]
    assert outputs[0]["custom_id"] == "a"
    assert outputs[0]["response"]["body"]["object"] == "chat.completion"


async def test_outputs_can_stay_null_at_a_terminal_status(session: aiohttp.ClientSession) -> None:
    """``--behaviour outputs=null``: what the real API has answered for an inline job (the SDK
    added a null check); the results are still in the output file."""
    async with serve(stepped_config(behaviour=Behaviour(outputs="null"))) as emu:
        api = Api(session, emu)
        inline = await api.create(requests=[chat_line("a", "hi"), chat_line("b", "ho")])
        done = await api.finish(inline["id"])
        assert done["status"] == "SUCCESS" and done["outputs"] is None
        assert (await api.job(inline["id"], inline="true"))["outputs"] is None
        lines = await api.lines(done["output_file"])
        assert sorted(line["custom_id"] for line in lines) == ["a", "b"]
