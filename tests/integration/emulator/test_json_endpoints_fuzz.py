"""Issue 13 item 13, as a property: whatever JSON (or near-JSON: NaN, Infinity, huge numbers)
a client posts to the JSON endpoints, the answer is never a 5xx, is always valid JSON, is in
Mistral's error shape when refused, and the engine still finishes a job afterwards.

One emulator serves every example (it runs in a thread with its own event loop; the examples
talk to it with a blocking client), so the property costs about a second."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchd.emulator import serve
from tests.integration.emulator.helpers import AUTH, TERMINAL, chat_line, stepped_config

OBJECT_ERROR_KEYS = {"object", "message", "type", "param", "code"}
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities included: json.dumps writes them as bare tokens
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
chat_body = st.fixed_dictionaries(
    {"messages": st.just([{"role": "user", "content": "x"}]) | values},
    optional={"model": values, "max_tokens": values},
)
job_bodies = values | st.fixed_dictionaries(
    {},
    optional={
        "endpoint": st.sampled_from(["/v1/chat/completions", "/v1/ocr", "/v1/nope"]) | values,
        "model": st.just("m") | values,
        "requests": st.lists(
            st.fixed_dictionaries({"body": chat_body}, optional={"custom_id": values}),
            max_size=3,
        )
        | values,
        "input_files": values,
        "timeout_hours": values,
        "metadata": values,
    },
)
advance_bodies = values | st.fixed_dictionaries({"seconds": values | st.floats()})
fault_bodies = values | st.fixed_dictionaries(
    {},
    optional={
        "seed": values,
        "rules": st.lists(
            st.fixed_dictionaries(
                {"kind": st.sampled_from(["429", "500", "latency", "reset", "x"]) | values},
                optional={k: values for k in ("probability", "delay_s", "fraction", "limit")},
            ),
            max_size=2,
        )
        | values,
    },
)


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()  # NaN -> a bare NaN token
        headers = {**AUTH, "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=10) as resp:
                return resp.status, _strict_json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _strict_json(exc.read())


def _strict_json(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=lambda c: pytest.fail(f"{c} in a response"))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    urls: queue.Queue[str] = queue.Queue()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def run() -> None:
        async with serve(stepped_config()) as emu:
            stop.append((asyncio.get_running_loop(), asyncio.Event()))
            urls.put(emu.url)
            await stop[0][1].wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    yield Client(urls.get(timeout=10))
    loop, event = stop[0]
    loop.call_soon_threadsafe(event.set)
    thread.join(timeout=10)


def check_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if status == 422:
        assert set(body) == {"detail"} and body["detail"], body
    elif status >= 400:
        assert set(body) == OBJECT_ERROR_KEYS and body["object"] == "error", body


def finishes_a_job(client: Client) -> None:
    status, job = client.call(
        "POST",
        "/v1/batch/jobs",
        {"endpoint": "/v1/chat/completions", "model": "m", "requests": [chat_line("a", "hi")]},
    )
    assert status == 200, job
    for _ in range(200):
        status, now = client.call("POST", "/_emulator/advance", {"seconds": 60})
        assert status in {200, 400}, now  # 400: time reached the year 9999, still fine
        status, current = client.call("GET", f"/v1/batch/jobs/{job['id']}")
        if current["status"] in TERMINAL:
            assert current["status"] == "SUCCESS"
            return
        time.sleep(0.01)  # the input scan and the result file run in worker threads
    raise AssertionError("the engine no longer finishes jobs")


@SETTINGS
@given(body=job_bodies)
def test_create_never_fails_with_a_5xx(client: Client, body: object) -> None:
    check_answer(*client.call("POST", "/v1/batch/jobs", body))


@SETTINGS
@given(body=advance_bodies)
def test_advance_never_fails_with_a_5xx(client: Client, body: object) -> None:
    check_answer(*client.call("POST", "/_emulator/advance", body))


@SETTINGS
@given(body=fault_bodies)
def test_faults_never_fail_with_a_5xx(client: Client, body: object) -> None:
    try:
        check_answer(*client.call("PUT", "/_emulator/faults", body))
    finally:
        assert client.call("PUT", "/_emulator/faults", {"rules": []})[0] == 200


def test_the_engine_still_finishes_a_job_after_the_fuzzing(client: Client) -> None:
    finishes_a_job(client)
