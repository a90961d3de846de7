"""Fault injection over real HTTP: every kind, both phases, routes, seeds and limits."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from batchd.emulator import FaultConfig, FaultKind, FaultRule, Phase, serve
from tests.integration.emulator.helpers import AUTH, Api, chat_file, chat_line, stepped_config

CREATE = "POST /v1/batch/jobs"
JOB_BODY = {"endpoint": "/v1/chat/completions", "model": "m", "requests": [chat_line("a", "x")]}


async def test_429_before_the_handler_has_retry_after_and_no_effect(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.RATE_LIMIT, route=CREATE, retry_after_s=3)])
    status, body, resp = await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert status == 429
    assert resp.headers["Retry-After"] == "3"
    assert body == {
        "object": "error",
        "message": "Requests rate limit exceeded",
        "type": "rate_limited",
        "param": None,
        "code": "1300",
    }
    assert api.emu.jobs() == []
    assert (await api.call("GET", "/v1/batch/jobs"))[0] == 200  # other routes unaffected


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        (FaultKind.INTERNAL, 500, "application/json"),
        (FaultKind.BAD_GATEWAY, 502, "text/html"),
        (FaultKind.UNAVAILABLE, 503, "application/json"),
    ],
)
async def test_server_errors_before_the_handler(
    api: Api, kind: FaultKind, status: int, content_type: str
) -> None:
    api.emu.set_faults([FaultRule(kind, route=CREATE)])
    got, body, resp = await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert got == status
    assert resp.headers["Content-Type"].startswith(content_type)
    if content_type == "application/json":
        assert body["object"] == "error"
    assert api.emu.jobs() == []


async def test_server_error_after_the_handler_keeps_the_effect(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.INTERNAL, route=CREATE, phase=Phase.AFTER)])
    status, _, _ = await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert status == 500
    assert len(api.emu.jobs()) == 1


@pytest.mark.parametrize(("phase", "jobs_created"), [(Phase.BEFORE, 0), (Phase.AFTER, 1)])
async def test_reset_connection(api: Api, phase: Phase, jobs_created: int) -> None:
    api.emu.set_faults([FaultRule(FaultKind.RESET, route=CREATE, phase=phase)])
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert len(api.emu.jobs()) == jobs_created
    assert (await api.call("GET", "/v1/batch/jobs"))[0] == 200  # the server is fine


async def test_latency_after_the_handler_outlasts_the_client_timeout(api: Api) -> None:
    rule = FaultRule(FaultKind.LATENCY, route=CREATE, phase=Phase.AFTER, delay_s=1.0)
    api.emu.set_faults([rule])
    with pytest.raises(asyncio.TimeoutError):
        await api.call(
            "POST", "/v1/batch/jobs", json=JOB_BODY, timeout=aiohttp.ClientTimeout(total=0.2)
        )
    assert len(api.emu.jobs()) == 1  # created, but the client never heard


async def test_latency_before_the_handler_delays_the_answer(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.LATENCY, route="GET /v1/files", delay_s=0.3)])
    start = time.monotonic()
    status, _, _ = await api.call("GET", "/v1/files")
    assert status == 200
    assert time.monotonic() - start >= 0.3


async def _read_until_error(resp: aiohttp.ClientResponse) -> int:
    """Bytes received before the body broke off (it must break off)."""
    received = 0
    try:
        async for chunk in resp.content.iter_chunked(65536):
            received += len(chunk)
    except aiohttp.ClientPayloadError:
        return received
    raise AssertionError("the download was not truncated")


async def test_truncated_download(api: Api, session: aiohttp.ClientSession) -> None:
    content = chat_file(2000)
    f = await api.upload(content)
    api.emu.set_faults([FaultRule(FaultKind.TRUNCATE, fraction=0.25)])
    async with session.get(f"{api.url}/v1/files/{f['id']}/content", headers=AUTH) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(content)
        received = await _read_until_error(resp)
    assert received == int(len(content) * 0.25)
    assert api.emu.stats()["faults.truncate"] == 1


async def test_truncated_signed_url_download(api: Api, session: aiohttp.ClientSession) -> None:
    content = chat_file(500)
    f = await api.upload(content)
    signed = await api.ok("GET", f"/v1/files/{f['id']}/url")
    api.emu.set_faults([FaultRule(FaultKind.TRUNCATE, route="GET /blob/*", fraction=0.5)])
    async with session.get(signed["url"]) as resp:
        assert int(resp.headers["Content-Length"]) == len(content)
        assert await _read_until_error(resp) == len(content) // 2


async def _statuses(session: aiohttp.ClientSession, seed: int, n: int = 30) -> list[int]:
    rule = FaultRule(FaultKind.RATE_LIMIT, probability=0.5, route="GET /v1/files")
    async with serve(stepped_config(faults=FaultConfig((rule,), seed=seed))) as emu:
        api = Api(session, emu)
        return [(await api.call("GET", "/v1/files"))[0] for _ in range(n)]


async def test_faults_are_reproducible_with_a_seed(session: aiohttp.ClientSession) -> None:
    first = await _statuses(session, seed=11)
    assert first == await _statuses(session, seed=11)
    assert set(first) == {200, 429}
    assert first != await _statuses(session, seed=12)


async def test_limit_and_runtime_changes(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.UNAVAILABLE, route="/v1/files", limit=2)])
    assert [(await api.call("GET", "/v1/files"))[0] for _ in range(4)] == [503, 503, 200, 200]
    api.emu.set_faults(FaultConfig())
    assert (await api.call("GET", "/v1/files"))[0] == 200
    stats = api.emu.stats()
    assert stats["faults_injected"] == 2 and stats["faults.503"] == 2


async def test_default_route_is_every_v1_route_only(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.INTERNAL)])
    assert (await api.call("GET", "/v1/batch/jobs"))[0] == 500
    assert (await api.call("GET", "/_emulator/health"))[0] == 200
    api.emu.set_faults([FaultRule(FaultKind.INTERNAL, route="*")])
    assert (await api.call("GET", "/_emulator/stats"))[0] == 200  # admin is never faulted


async def test_admin_fault_endpoints(api: Api) -> None:
    rule = {
        "kind": "429",
        "probability": 1.0,
        "route": CREATE,
        "phase": "before",
        "delay_s": 1.0,
        "retry_after_s": 5,
        "fraction": 0.5,
        "limit": None,
    }
    put = await api.ok("PUT", "/_emulator/faults", json={"seed": 4, "rules": [rule]})
    assert put == {"seed": 4, "rules": [rule]}
    assert await api.ok("GET", "/_emulator/faults") == put
    status, _, resp = await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert status == 429 and resp.headers["Retry-After"] == "5"
    status, body, _ = await api.call(
        "PUT", "/_emulator/faults", json={"rules": [{"kind": "teapot"}]}
    )
    assert status == 422 and body["detail"][0]["loc"][:2] == ["body", "rules"]
    status, body, _ = await api.call(
        "PUT", "/_emulator/faults", json={"rules": [{"kind": "429", "probability": 2}]}
    )
    assert status == 422


async def test_admin_stats_advance_health(api: Api) -> None:
    await api.upload(chat_file(1))
    job = await api.create(requests=[chat_line("a", "x")])
    await api.job(job["id"])
    await api.job(job["id"])
    stats = await api.ok("GET", "/_emulator/stats")
    assert stats == {
        "POST /v1/files": 1,
        "POST /v1/batch/jobs": 1,
        "GET /v1/batch/jobs/{job_id}": 2,
        "total": 4,
        "faults_injected": 0,
    }
    assert api.emu.stats() == stats
    reset = await api.ok("POST", "/_emulator/stats/reset")
    assert reset == {"total": 0, "faults_injected": 0}
    before = api.emu.now()
    advanced = await api.ok("POST", "/_emulator/advance", json={"seconds": 3600})
    assert advanced["now"] >= before + 3600
    status, _, _ = await api.call("POST", "/_emulator/advance", json={"seconds": -1})
    assert status == 422
    await api.emu.settle()
    health = await api.ok("GET", "/_emulator/health", headers={})
    assert health | {"now": None} == {
        "status": "ok",
        "now": None,
        "speed": 1.0,
        "jobs": 1,
        "files": 2,
    }  # the input and the output
    api.emu.reset_stats()
    assert api.emu.stats()["total"] == 0


async def test_auth_routing_and_method_errors(api: Api) -> None:
    status, body, _ = await api.call("GET", "/v1/nothing-here", headers={})
    assert status == 401 and body["message"] == "Unauthorized"  # the gateway answers first
    status, body, _ = await api.call("GET", "/v1/nothing-here")
    assert (status, body) == (404, {"detail": "Not Found"})
    status, body, _ = await api.call("PUT", "/v1/batch/jobs")
    assert (status, body) == (405, {"detail": "Method Not Allowed"})
    for header in ("Bearer", "Basic test-key", "Bearer  "):
        status, _, _ = await api.call("GET", "/v1/batch/jobs", headers={"Authorization": header})
        assert status == 401
    stats = api.emu.stats()
    assert stats["GET <unmatched>"] == 2 and stats["PUT <unmatched>"] == 1


async def test_any_key_is_accepted_when_none_is_configured(session: aiohttp.ClientSession) -> None:
    async with serve(stepped_config(api_keys=())) as emu:
        api = Api(session, emu)
        ok = {"Authorization": "Bearer whatever"}
        assert (await api.call("GET", "/v1/files", headers=ok))[0] == 200
        assert (await api.call("GET", "/v1/files", headers={}))[0] == 401
        empty = {"Authorization": "Bearer "}
        assert (await api.call("GET", "/v1/files", headers=empty))[0] == 401


async def test_short_results_write_fewer_lines_than_the_job_counts(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.SHORT_RESULTS, fraction=0.5, limit=1)])
    f = await api.upload(chat_file(4))
    short = await api.finish((await api.create(input_files=[f["id"]]))["id"])
    assert (short["status"], short["completed_requests"], short["succeeded_requests"]) == (
        "SUCCESS",
        4,
        4,
    )
    assert sorted(line["custom_id"] for line in await api.lines(short["output_file"])) == [
        "0",
        "1",
    ]
    meta = await api.ok("GET", f"/v1/files/{short['output_file']}")
    assert meta["num_lines"] == 2
    whole = await api.finish((await api.create(input_files=[f["id"]]))["id"])  # limit=1
    assert len(await api.lines(whole["output_file"])) == 4
    assert api.emu.stats()["faults.short_results"] == 1


async def test_short_counts_count_fewer_requests_than_the_files_hold(api: Api) -> None:
    rule = FaultRule(FaultKind.SHORT_COUNTS, fraction=0.5, route="/v1/chat/completions")
    api.emu.set_faults([rule])
    f = await api.upload(chat_file(4))
    done = await api.finish((await api.create(input_files=[f["id"]]))["id"])
    assert done["status"] == "SUCCESS" and done["total_requests"] == 4
    assert (done["completed_requests"], done["succeeded_requests"]) == (2, 2)
    assert len(await api.lines(done["output_file"])) == 4
    embeddings = await api.create(
        endpoint="/v1/embeddings", requests=[{"custom_id": "e", "body": {"input": "x"}}]
    )
    other = await api.finish(embeddings["id"])  # another endpoint: the rule does not match
    assert other["completed_requests"] == 1
