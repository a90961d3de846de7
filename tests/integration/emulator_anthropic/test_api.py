"""The Anthropic emulator's wire details over raw HTTP: auth headers, errors, times, cursors,
the lifecycle (counts at zero until the end, expiry, cancel), delete and results."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from batchd.emulator.anthropic import AnthropicEmulator
from batchd.emulator.faults import FaultKind, FaultRule, Phase
from tests.integration.emulator_anthropic.conftest import HEADERS, KEY, ended, request

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
BATCHES = "/v1/messages/batches"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    emu: AnthropicEmulator,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    data = None if body is None else io.BytesIO(json.dumps(body).encode())
    url = path if path.startswith("http") else emu.url + path
    async with http.request(method, url, data=data, headers=headers or HEADERS) as resp:
        raw = await resp.read()
        parsed = json.loads(raw) if resp.content_type == "application/json" else raw
        return resp.status, parsed, resp


async def create(http: aiohttp.ClientSession, emu: AnthropicEmulator, n: int) -> dict[str, Any]:
    status, body, _ = await call(
        http, emu, "POST", BATCHES, {"requests": [request(f"r{i}") for i in range(n)]}
    )
    assert status == 200, body
    return dict(body)


async def test_either_auth_header_and_any_version(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    for headers in (
        {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        {"Authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"},
    ):
        status, body, resp = await call(http, emu, "GET", BATCHES, headers=headers)
        assert status == 200 and body["data"] == [] and body["has_more"] is False
        assert resp.headers["request-id"].startswith("req_")

    status, body, resp = await call(http, emu, "GET", BATCHES, headers={"x-api-key": "nope"})
    assert status == 401
    assert body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": resp.headers["request-id"],
    }
    status, body, _ = await call(http, emu, "GET", BATCHES, headers={"x-api-key": KEY})
    assert status == 400 and "anthropic-version" in body["error"]["message"]


async def test_counts_stay_at_zero_until_the_end(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    batch = await create(http, emu, 3)
    assert RFC3339.fullmatch(batch["created_at"]) and RFC3339.fullmatch(batch["expires_at"])
    emu.advance(35)  # two of three requests processed
    status, seen, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}")
    assert status == 200 and seen["processing_status"] == "in_progress"
    assert seen["request_counts"] == {
        "processing": 3,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    status, body, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}/results")
    assert status == 404 and body["error"]["type"] == "not_found_error"

    await ended(emu, 5)
    status, seen, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}")
    assert seen["processing_status"] == "ended" and RFC3339.fullmatch(seen["ended_at"])
    assert seen["request_counts"]["succeeded"] == 3 and seen["request_counts"]["processing"] == 0
    status, raw, resp = await call(http, emu, "GET", seen["results_url"])
    assert status == 200 and resp.content_length == len(raw)
    lines = [json.loads(line) for line in raw.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["r0", "r1", "r2"]
    message = lines[0]["result"]["message"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["usage"]["output_tokens"] == len(message["content"][0]["text"].split())


async def test_a_batch_past_24_hours_expires_what_is_left(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    batch = await create(http, emu, 10_000)  # 10 + 100,000 s: more than a day
    await ended(emu, 90_000)
    _, seen, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}")
    counts = seen["request_counts"]
    assert seen["processing_status"] == "ended" and seen["ended_at"] >= seen["expires_at"]
    assert counts["succeeded"] == 8639 and counts["expired"] == 10_000 - 8639


async def test_cancel_of_an_ended_batch_changes_nothing(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    batch = await create(http, emu, 1)
    await ended(emu)
    _, before, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}")
    status, after, _ = await call(http, emu, "POST", f"{BATCHES}/{batch['id']}/cancel")
    assert status == 200 and after == before


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"requests": []}, "between 1 and 100,000"),
        ({"requests": [{"custom_id": "a b", "params": {}}]}, "requests.0.custom_id"),
        ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "requests.0.custom_id"),
        ({"requests": [request("a"), request("a")]}, "Duplicate custom_id 'a'"),
        ({"requests": [{"custom_id": "a"}]}, "requests.0.params"),
        ({"requests": [request("a")], "metadata": {}}, "metadata: Extra inputs"),
    ],
)
async def test_create_refuses_a_malformed_body(
    http: aiohttp.ClientSession, emu: AnthropicEmulator, body: object, problem: str
) -> None:
    status, answer, _ = await call(http, emu, "POST", BATCHES, body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert problem in answer["error"]["message"]
    assert emu.batches() == []


async def test_batches_are_scoped_to_their_key(http: aiohttp.ClientSession) -> None:
    from batchd.emulator.anthropic import serve_anthropic
    from tests.integration.emulator_anthropic.conftest import stepped_config

    async with serve_anthropic(stepped_config(api_keys=(KEY, "other"))) as emu:
        batch = await create(http, emu, 1)
        other = {"x-api-key": "other", "anthropic-version": "2023-06-01"}
        status, _, _ = await call(http, emu, "GET", f"{BATCHES}/{batch['id']}", headers=other)
        assert status == 404
        _, page, _ = await call(http, emu, "GET", BATCHES, headers=other)
        assert page["data"] == []


async def test_cursors_and_limits_are_checked(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    for query in ("limit=0", "limit=1001", "limit=x", "after_id=msgbatch_unknown"):
        status, body, _ = await call(http, emu, "GET", f"{BATCHES}?{query}")
        assert status == 400 and body["error"]["type"] == "invalid_request_error", query


async def test_a_deleted_batch_is_gone_but_still_a_cursor(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    first, second = await create(http, emu, 1), await create(http, emu, 1)
    status, body, _ = await call(http, emu, "DELETE", f"{BATCHES}/{first['id']}")
    assert status == 400  # not ended yet
    await ended(emu)
    status, body, _ = await call(http, emu, "DELETE", f"{BATCHES}/{second['id']}")
    assert body == {"id": second["id"], "type": "message_batch_deleted"}
    _, page, _ = await call(http, emu, "GET", f"{BATCHES}?before_id={second['id']}")
    assert page["data"] == [] and page["first_id"] is None
    _, page, _ = await call(http, emu, "GET", f"{BATCHES}?after_id={second['id']}")
    assert [b["id"] for b in page["data"]] == [first["id"]]


async def test_faults_in_anthropic_shape_and_a_truncated_download(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    batch = await create(http, emu, 20)
    await ended(emu)
    emu.set_faults(
        [
            FaultRule(FaultKind.RATE_LIMIT, route=f"GET {BATCHES}", retry_after_s=7, limit=1),
            FaultRule(FaultKind.TRUNCATE, route="GET */results", fraction=0.5, limit=1),
        ]
    )
    status, body, resp = await call(http, emu, "GET", BATCHES)
    assert status == 429 and resp.headers["retry-after"] == "7"
    assert body["error"]["type"] == "rate_limit_error"
    url = f"{emu.url}{BATCHES}/{batch['id']}/results"
    with pytest.raises(aiohttp.ClientPayloadError):
        await call(http, emu, "GET", url)
    status, raw, _ = await call(http, emu, "GET", url)
    assert status == 200 and len(raw.splitlines()) == 20
    assert emu.stats()["faults_injected"] == 2


async def test_a_create_answered_with_500_after_it_happened(
    http: aiohttp.ClientSession, emu: AnthropicEmulator
) -> None:
    emu.set_faults([FaultRule(FaultKind.INTERNAL, route=f"POST {BATCHES}", phase=Phase.AFTER)])
    status, body, _ = await call(http, emu, "POST", BATCHES, {"requests": [request("a")]})
    assert status == 500 and body["error"]["type"] == "api_error"
    assert len(emu.batches()) == 1  # the batch exists all the same


async def test_admin_endpoints(http: aiohttp.ClientSession, emu: AnthropicEmulator) -> None:
    async with http.get(f"{emu.url}/_emulator/health") as resp:
        assert (await resp.json())["provider"] == "anthropic"
    before = emu.now()
    async with http.post(f"{emu.url}/_emulator/advance", json={"seconds": 60}) as resp:
        assert (await resp.json())["now"] >= before + 60
    async with http.post(f"{emu.url}/_emulator/advance", json={"seconds": -1}) as resp:
        assert resp.status == 422
