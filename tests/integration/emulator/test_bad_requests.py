"""Issue 13 item 13: the emulator under bad HTTP. Every bad request gets a 4xx with an error
body in Mistral's shape (FastAPI's ``detail`` for 422, the ``object: error`` body otherwise),
is logged in one line without a traceback, and leaves the engine able to finish a job."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.emulator import serve
from tests.integration.emulator.helpers import AUTH, TERMINAL, Api, chat_line, stepped_config

OBJECT_ERROR_KEYS = {"object", "message", "type", "param", "code"}
DETAIL_KEYS = {"type", "loc", "msg", "input"}
JSON = {**AUTH, "Content-Type": "application/json"}
MULTIPART = {**AUTH, "Content-Type": "multipart/form-data; boundary=x"}
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_JOB = (
    b'{"endpoint":"/v1/chat/completions","model":"m","requests":[{"body":{"x":' + DEEP + b"}}]}"
)
BAD_PART_HEADER = b"--x\r\ngarbage\r\n\r\n--x--\r\n"
UNFINISHED_PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'

# (method, path, body, headers, status, the first detail's type or None for an object error)
CASES: list[tuple[str, str, bytes, dict[str, str], int, str | None]] = [
    ("POST", "/v1/batch/jobs", DEEP_JOB, JSON, 422, "json_invalid"),
    ("POST", "/v1/batch/jobs", DEEP, JSON, 422, "json_invalid"),
    ("POST", "/v1/files", BAD_PART_HEADER, MULTIPART, 400, None),
    ("POST", "/v1/files", UNFINISHED_PART, MULTIPART, 400, None),
    ("POST", "/v1/files", b"no boundary in here", MULTIPART, 400, None),
    ("POST", "/_emulator/advance", b'{"seconds": Infinity}', JSON, 422, "finite_number"),
    ("POST", "/_emulator/advance", b'{"seconds": -Infinity}', JSON, 422, "finite_number"),
    ("POST", "/_emulator/advance", b'{"seconds": NaN}', JSON, 422, "finite_number"),
    ("POST", "/_emulator/advance", b'{"seconds": -5}', JSON, 422, "greater_than_equal"),
    ("POST", "/_emulator/advance", b'{"seconds": 1e308}', JSON, 422, "less_than_equal"),
    ("POST", "/_emulator/advance", b'{"seconds": 1e400}', JSON, 422, "finite_number"),
    ("POST", "/_emulator/advance", DEEP, JSON, 422, "json_invalid"),
    ("GET", "/v1/batch/jobs?page=-5", b"", AUTH, 422, "greater_than_equal"),
    ("GET", "/v1/batch/jobs?page_size=-1", b"", AUTH, 422, "greater_than_equal"),
    ("GET", "/v1/batch/jobs?page_size=" + "9" * 30, b"", AUTH, 422, "less_than_equal"),
    ("GET", "/v1/files?page=-5", b"", AUTH, 422, "greater_than_equal"),
    ("GET", "/v1/files?page_size=-1", b"", AUTH, 422, "greater_than_equal"),
    ("GET", "/v1/files?page_size=" + "9" * 30, b"", AUTH, 422, "less_than_equal"),
    ("PUT", "/_emulator/faults", b'{"faults": 5}', JSON, 422, "unexpected_keyword_argument"),
    (
        "PUT",
        "/_emulator/faults",
        b'{"rules": [{"kind": "500", "chance": 1}]}',
        JSON,
        422,
        "unexpected_keyword_argument",
    ),
    (
        "PUT",
        "/_emulator/faults",
        b'{"rules": [{"kind": "latency", "delay_s": Infinity}]}',
        JSON,
        422,
        "value_error",
    ),
    ("PUT", "/_emulator/faults", b"[1, 2", JSON, 422, "json_invalid"),
]


def assert_error_shape(status: int, body: Any, detail_type: str | None) -> None:
    if status == 422:
        assert set(body) == {"detail"}, body
        first = body["detail"][0]
        assert DETAIL_KEYS <= set(first) and first["type"] == detail_type, first
    else:
        assert set(body) == OBJECT_ERROR_KEYS and body["object"] == "error", body
        assert isinstance(body["message"], str) and body["message"]


async def finishes_a_job(api: Api) -> None:
    """The engine still works: a new job ends SUCCESS, moved on by HTTP ``advance``."""
    job = await api.create(requests=[chat_line("a", "hello"), chat_line("b", "again")])
    for _ in range(20):
        await api.emu.settle()
        current = await api.job(job["id"])
        if current["status"] in TERMINAL:
            assert (current["status"], current["succeeded_requests"]) == ("SUCCESS", 2)
            return
        assert (await api.ok("POST", "/_emulator/advance", json={"seconds": 60}))["now"]
    raise AssertionError("the engine no longer finishes jobs")


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "detail_type"),
    CASES,
    ids=[f"{c[0]} {c[1][:40]} {c[2][:24]!r}" for c in CASES],
)
async def test_a_bad_request_is_a_4xx_in_mistrals_shape_and_the_engine_goes_on(
    api: Api,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    detail_type: str | None,
) -> None:
    with capture_logs() as logs:
        got, answer, resp = await api.call(method, path, data=body, headers=headers)
    assert got == status, answer
    assert resp.headers["Content-Type"].startswith("application/json")
    assert_error_shape(got, answer, detail_type)
    assert [e for e in logs if e["log_level"] not in {"debug", "info"}] == []
    refused = [e for e in logs if e["event"] == "emulator.request_refused"]
    assert [(e["status"], "exc_info" in e) for e in refused] == [(status, False)]
    await finishes_a_job(api)


async def test_advance_never_goes_past_the_year_9999(api: Api) -> None:
    step = {"seconds": 3_000_000_000}  # allowed alone (95 years), not 90 times over
    answers = [await api.call("POST", "/_emulator/advance", json=step) for _ in range(90)]
    statuses = [a[0] for a in answers]
    assert statuses[0] == 200 and statuses[-1] == 400
    body = answers[-1][1]
    assert set(body) == OBJECT_ERROR_KEYS and "9999" in body["message"]
    health = await api.ok("GET", "/_emulator/health")
    assert health["now"] < 253_402_300_800
    job = await api.create(requests=[chat_line("a", "x")])  # created_at in 9999: still served
    assert job["status"] == "QUEUED"


async def test_a_nan_echoed_in_a_422_is_still_json(api: Api) -> None:
    raw = b'{"endpoint": "/v1/chat/completions", "timeout_hours": NaN, "requests": []}'
    async with api.session.post(api.url + "/v1/batch/jobs", data=raw, headers=JSON) as resp:
        assert resp.status == 422
        text = await resp.text()
    body = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert any(d["input"] == "NaN" for d in body["detail"])


async def test_an_input_file_nested_too_deeply_fails_its_job_not_the_engine(api: Api) -> None:
    deep_line = b'{"custom_id": "deep", "body": {"x": ' + DEEP + b"}}\n"
    uploaded = await api.upload(deep_line + json.dumps(chat_line("ok", "hi")).encode() + b"\n")
    job = await api.create(input_files=[uploaded["id"]])
    done = await api.finish(job["id"])
    assert done["status"] == "FAILED" and "nested too deeply" in done["errors"][0]["message"]
    await finishes_a_job(api)


async def test_aiohttps_own_400_is_logged_in_one_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A request too malformed to reach the app: aiohttp answers 400 itself; the log has one
    line for it, never a traceback."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    with capture_logs() as logs:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/files HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        await writer.drain()
        reply = await reader.read()
        writer.close()
    assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert [e["event"] for e in logs] == ["emulator.bad_http"]
    assert logs[0]["status"] == 400 and "exc_info" not in logs[0]
    assert [r for r in caplog.records if r.exc_info] == []
    await finishes_a_job(api)


async def test_an_unexpected_error_still_gets_a_500_with_its_traceback(api: Api) -> None:
    def broken(_job: object) -> None:
        raise RuntimeError("a bug")

    api.emu._state.engine.cancel = broken  # type: ignore[method-assign,assignment]
    job = await api.create(requests=[chat_line("a", "x")])
    with capture_logs() as logs:
        status, body, _ = await api.call("POST", f"/v1/batch/jobs/{job['id']}/cancel")
    assert status == 500 and body["type"] == "internal_error"
    assert [(e["event"], e.get("exc_info")) for e in logs] == [("emulator.handler_failed", True)]


async def test_the_engine_survives_a_failing_tick() -> None:
    async with serve(stepped_config()) as emu:
        engine = emu._state.engine
        real = engine.catch_up
        calls = 0

        def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug")
            real()

        engine.catch_up = flaky  # type: ignore[method-assign]
        with capture_logs() as logs:
            for _ in range(500):  # up to 5 s on a loaded machine; about 20 ms otherwise
                engine._wake.set()
                await asyncio.sleep(0.01)
                if calls > 1:
                    break
        assert calls > 1 and "emulator.tick_failed" in [e["event"] for e in logs]
        assert engine._ticker is not None and not engine._ticker.done()
