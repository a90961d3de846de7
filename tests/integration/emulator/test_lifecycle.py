"""Job lifecycle over real HTTP: every path from QUEUED to each terminal status."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Literal

import aiohttp
import pytest

from batchd.emulator import Behaviour, ProcessingModel, serve
from tests.integration.emulator.helpers import (
    STEPPED,
    Api,
    chat_file,
    chat_line,
    fast_config,
    jsonl,
    stepped_config,
)

COUNTERS = ("total_requests", "completed_requests", "succeeded_requests", "failed_requests")


def counters(job: dict[str, Any]) -> tuple[int, ...]:
    return tuple(job[k] for k in COUNTERS)


async def step(api: Api, seconds: float) -> None:
    api.emu.advance(seconds)
    await api.emu.settle()


async def test_success_path_step_by_step(api: Api) -> None:
    content = chat_file(4)
    f = await api.upload(content)
    job = await api.create(input_files=[f["id"]])
    await api.emu.settle()  # the input has been validated, but queue_s has not passed
    queued = await api.job(job["id"])
    assert queued["status"] == "QUEUED" and counters(queued) == (0, 0, 0, 0)

    await step(api, 10.5)
    running = await api.job(job["id"])
    assert running["status"] == "RUNNING" and counters(running) == (4, 0, 0, 0)
    assert running["started_at"] - running["created_at"] in {10, 11}
    assert running["completed_at"] is None

    await step(api, 20)
    assert counters(await api.job(job["id"])) == (4, 2, 2, 0)

    await step(api, 20)  # all done, results being written: still RUNNING
    finalizing = await api.job(job["id"])
    assert finalizing["status"] == "RUNNING" and counters(finalizing) == (4, 4, 4, 0)
    assert finalizing["output_file"] is None

    await step(api, 5)
    done = await api.job(job["id"])
    assert done["status"] == "SUCCESS" and counters(done) == (4, 4, 4, 0)
    assert done["completed_at"] >= done["started_at"] + 45
    assert done["error_file"] is None
    await _check_output_file(api, done["output_file"], expected_ids=["0", "1", "2", "3"])


async def _check_output_file(api: Api, file_id: str, expected_ids: list[str]) -> None:
    meta = await api.ok("GET", f"/v1/files/{file_id}")
    raw = await api.content(file_id)
    assert meta | {"id": None, "created_at": None, "filename": None} == {
        "id": None,
        "object": "file",
        "bytes": len(raw),
        "created_at": None,
        "filename": None,
        "purpose": "batch",
        "sample_type": "batch_result",
        "source": "mistral",
        "num_lines": len(expected_ids),
        "mimetype": "application/jsonl",
        "signature": None,
        "expires_at": None,
        "visibility": "workspace",
        "deleted": False,
    }
    lines = [json.loads(x) for x in raw.splitlines()]
    custom_ids = [line["custom_id"] for line in lines]
    assert sorted(custom_ids) == sorted(expected_ids)
    if len(expected_ids) > 1:
        assert custom_ids != expected_ids  # arbitrary order: clients must key on custom_id
    for line in lines:
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["id"].startswith(f"{line['custom_id']}-")
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "m"
        assert body["choices"][0]["message"]["role"] == "assistant"


BAD_REQUESTS = [
    chat_line("ok", "fine"),
    {"custom_id": "no-messages", "body": {"max_tokens": 3}},
    {"custom_id": "assistant-last", "body": {"messages": [{"role": "assistant", "content": "x"}]}},
    {
        "custom_id": "bad-tokens",
        "body": {"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
    },
    {
        "custom_id": "bad-model",
        "body": {"model": 7, "messages": [{"role": "user", "content": "x"}]},
    },
]


async def test_per_request_failures_go_to_the_error_file(api: Api) -> None:
    f = await api.upload(jsonl(BAD_REQUESTS))
    job = await api.create(input_files=[f["id"]])
    await api.emu.settle()
    await step(api, 10 + 20.5)  # two requests processed: one ok, one failed
    assert counters(await api.job(job["id"])) == (5, 2, 1, 1)
    done = await api.finish(job["id"])
    assert done["status"] == "SUCCESS" and counters(done) == (5, 5, 1, 4)
    errors = {line["custom_id"]: line for line in await api.lines(done["error_file"])}
    assert set(errors) == {"no-messages", "assistant-last", "bad-tokens", "bad-model"}
    statuses = {cid: line["response"]["status_code"] for cid, line in errors.items()}
    assert statuses == {
        "no-messages": 422,
        "assistant-last": 400,
        "bad-tokens": 422,
        "bad-model": 422,
    }
    for line in errors.values():
        body = line["response"]["body"]
        assert set(body) == {"object", "message", "type", "param", "code"}
        assert body["object"] == "error" and isinstance(line["error"]["message"], str)
    detail = errors["no-messages"]["response"]["body"]["message"]["detail"]
    assert detail[0]["loc"] == ["body", "messages"] and detail[0]["type"] == "missing"
    meta = await api.ok("GET", f"/v1/files/{done['error_file']}")
    assert meta["sample_type"] == "batch_error" and meta["num_lines"] == 4


async def test_error_field_can_be_a_bare_string(session: aiohttp.ClientSession) -> None:
    async with serve(stepped_config(behaviour=Behaviour(error_field="string"))) as emu:
        api = Api(session, emu)
        job = await api.create(requests=BAD_REQUESTS[1:2])
        done = await api.finish(job["id"])
        assert done["output_file"] is None  # every request failed: no output file at all
        (line,) = await api.lines(done["error_file"])
        assert isinstance(line["error"], str)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{"custom_id":"0","body":{}}\nnot json\n', "invalid JSON"),
        (b"[1,2]\n", "JSON object"),
        (b'{"custom_id":"0"}\n', "`body`"),
        (b'{"custom_id":7,"body":{}}\n', "`custom_id`"),
        (b"\n\n", "no requests"),
    ],
)
async def test_invalid_input_fails_the_job(api: Api, content: bytes, kind: str) -> None:
    f = await api.upload(content)
    job = await api.create(input_files=[f["id"]])
    done = await api.finish(job["id"])
    assert done["status"] == "FAILED"
    assert counters(done) == (0, 0, 0, 0)
    assert done["started_at"] is None and done["completed_at"] is not None
    assert done["output_file"] is None and done["error_file"] is None
    assert len(done["errors"]) == 1 and done["errors"][0]["count"] == 1
    assert kind in done["errors"][0]["message"]


async def test_invalid_lines_are_grouped_with_a_count(api: Api) -> None:
    f = await api.upload(b"x\ny\n" + chat_file(1) + b"z\n")
    done = await api.finish((await api.create(input_files=[f["id"]]))["id"])
    assert [e["count"] for e in done["errors"]] == [3]
    assert "line 1" in done["errors"][0]["message"]


async def test_timeout_keeps_partial_results(session: aiohttp.ClientSession) -> None:
    slow = dataclasses.replace(STEPPED, request_s=1000)  # 4 requests need 4000 s
    async with serve(stepped_config(processing=slow)) as emu:
        api = Api(session, emu)
        f = await api.upload(chat_file(4))
        job = await api.create(input_files=[f["id"]], timeout_hours=1)
        await emu.settle()
        await step(api, 3000)
        assert (await api.job(job["id"]))["status"] == "RUNNING"
        await step(api, 700)
        done = await api.finish(job["id"])
        assert done["status"] == "TIMEOUT_EXCEEDED"
        assert counters(done) == (4, 3, 3, 0)
        assert len(await api.lines(done["output_file"])) == 3


async def test_cancel_running_job_keeps_partial_results_and_is_idempotent(api: Api) -> None:
    f = await api.upload(chat_file(4))
    job = await api.create(input_files=[f["id"]])
    await api.emu.settle()
    await step(api, 10 + 25)  # 2 of 4 done
    cancelled = await api.ok("POST", f"/v1/batch/jobs/{job['id']}/cancel")
    assert cancelled["status"] == "CANCELLATION_REQUESTED"
    assert counters(cancelled) == (4, 2, 2, 0)
    await step(api, 2)
    again = await api.ok("POST", f"/v1/batch/jobs/{job['id']}/cancel")
    assert again == await api.job(job["id"])
    assert again["status"] == "CANCELLATION_REQUESTED" and counters(again) == (4, 2, 2, 0)
    await step(api, 4)
    done = await api.job(job["id"])
    assert done["status"] == "CANCELLED" and counters(done) == (4, 2, 2, 0)
    assert sorted(x["custom_id"] for x in await api.lines(done["output_file"])) == ["0", "1"]


async def test_cancel_queued_job(api: Api) -> None:
    job = await api.create(requests=[chat_line("a", "x")])
    cancelled = await api.ok("POST", f"/v1/batch/jobs/{job['id']}/cancel")
    assert cancelled["status"] == "CANCELLATION_REQUESTED"
    done = await api.finish(job["id"])
    assert done["status"] == "CANCELLED" and counters(done) == (0, 0, 0, 0)
    assert done["output_file"] is None and done["error_file"] is None


@pytest.mark.parametrize(("choice", "expected_status"), [("ok", 200), ("error", 400)])
async def test_cancel_of_a_terminal_job(
    session: aiohttp.ClientSession, choice: Literal["ok", "error"], expected_status: int
) -> None:
    async with serve(stepped_config(behaviour=Behaviour(cancel_terminal=choice))) as emu:
        api = Api(session, emu)
        job = await api.finish((await api.create(requests=[chat_line("a", "x")]))["id"])
        status, body, _ = await api.call("POST", f"/v1/batch/jobs/{job['id']}/cancel")
        assert status == expected_status
        if status == 200:
            assert body == job
        else:
            assert body["object"] == "error"
        assert (await api.job(job["id"]))["status"] == "SUCCESS"


@pytest.mark.parametrize(("choice", "expected_status"), [("allow", 200), ("reject", 409)])
async def test_delete_of_an_active_job(
    session: aiohttp.ClientSession, choice: Literal["allow", "reject"], expected_status: int
) -> None:
    async with serve(stepped_config(behaviour=Behaviour(delete_active=choice))) as emu:
        api = Api(session, emu)
        job = await api.create(requests=[chat_line("a", "x")])
        status, body, _ = await api.call("DELETE", f"/v1/batch/jobs/{job['id']}")
        assert status == expected_status, body
        if status == 409:
            assert body["object"] == "error"
            assert (await api.finish(job["id"]))["status"] == "SUCCESS"
            assert (await api.call("DELETE", f"/v1/batch/jobs/{job['id']}"))[0] == 200


async def test_deleting_the_input_file_does_not_break_the_job(api: Api) -> None:
    f = await api.upload(chat_file(3))
    job = await api.create(input_files=[f["id"]])
    await api.ok("DELETE", f"/v1/files/{f['id']}")
    done = await api.finish(job["id"])
    assert done["status"] == "SUCCESS" and done["succeeded_requests"] == 3
    assert [p.name for p in api.emu.data_dir.iterdir() if p.name == f["id"]] == []


async def test_same_input_same_output_bytes(session: aiohttp.ClientSession) -> None:
    content = chat_file(100, max_tokens=30) + jsonl(BAD_REQUESTS)
    outputs = []
    for seed in (1, 2):
        async with serve(stepped_config(seed=seed)) as emu:
            api = Api(session, emu)
            for _ in range(2):
                f = await api.upload(content)
                done = await api.finish((await api.create(input_files=[f["id"]]))["id"])
                outputs.append(
                    (await api.content(done["output_file"]), await api.content(done["error_file"]))
                )
    assert all(o == outputs[0] for o in outputs)


async def test_time_scales_with_speed(session: aiohttp.ClientSession) -> None:
    async with serve(fast_config()) as emu:  # ~13 emulated seconds at 2000x: a few ms
        api = Api(session, emu)
        job = await api.create(requests=[chat_line(str(i), "x") for i in range(20)])
        start = time.monotonic()
        while (await api.job(job["id"]))["status"] != "SUCCESS":
            assert time.monotonic() - start < 10
            await emu.settle()


async def test_seeded_jitter_spreads_jobs_reproducibly(session: aiohttp.ClientSession) -> None:
    processing = ProcessingModel(
        queue_s=1000,
        request_s=1000,
        parallelism=1,
        min_run_s=0,
        finalize_s=0,
        cancel_s=0,
        jitter=0.5,
    )
    runs = []
    for _ in range(2):
        async with serve(stepped_config(processing=processing, seed=3)) as emu:
            api = Api(session, emu)
            ids = [(await api.create(requests=[chat_line("a", "x")]))["id"] for _ in range(5)]
            await emu.settle()
            emu.advance(4000)
            await emu.settle()
            jobs = [await api.job(i) for i in ids]
            runs.append(
                [
                    (j["started_at"] - j["created_at"], j["completed_at"] - j["started_at"])
                    for j in jobs
                ]
            )
    first, second = runs
    assert all(
        abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1 for a, b in zip(first, second, strict=True)
    )
    assert len({q for q, _ in first}) >= 4  # jobs end at different times
    assert all(500 <= q <= 1500 and 500 <= r <= 1500 for q, r in first), first
