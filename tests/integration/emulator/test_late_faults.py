"""Faults of a provider slow to process a create (issue 12): ``late`` applies it after a delay
whether or not the client is still connected, ``late_reset`` applies it and drops the
connection. And ``missing_input_status``: a create naming an unknown input file refused with
400 or 422 instead of 404 (issue 13 item 18)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from batchd.emulator import Behaviour, FaultKind, FaultRule, Phase, serve
from batchd.emulator.faults import parse_fault_spec
from tests.integration.emulator.helpers import Api, chat_line, stepped_config

CREATE = "POST /v1/batch/jobs"
JOB_BODY = {"endpoint": "/v1/chat/completions", "model": "m", "requests": [chat_line("a", "x")]}
GIVE_UP = aiohttp.ClientTimeout(total=0.2)


async def wait_for_jobs(api: Api, count: int, timeout_s: float = 5.0) -> float:
    """Seconds until the emulator holds ``count`` jobs."""
    start = time.monotonic()
    while len(api.emu.jobs()) < count:
        assert time.monotonic() - start < timeout_s, f"no job after {timeout_s} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.parametrize("kind", [FaultKind.LATE, FaultKind.LATE_RESET])
async def test_a_create_lands_after_the_client_gave_up(api: Api, kind: FaultKind) -> None:
    api.emu.set_faults([FaultRule(kind, route=CREATE, delay_s=0.8)])
    start = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await api.call("POST", "/v1/batch/jobs", json=JOB_BODY, timeout=GIVE_UP)
    assert api.emu.jobs() == []  # not yet: the provider is still processing it
    await wait_for_jobs(api, 1)
    assert time.monotonic() - start >= 0.75
    await asyncio.sleep(0.3)
    assert len(api.emu.jobs()) == 1  # applied once


async def test_late_answers_a_client_that_waited(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.LATE, route=CREATE, delay_s=0.3)])
    start = time.monotonic()
    status, body, _ = await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert status == 200 and time.monotonic() - start >= 0.3
    assert [j["id"] for j in api.emu.jobs()] == [body["id"]]


async def test_late_reset_applies_then_drops_the_connection(api: Api) -> None:
    api.emu.set_faults([FaultRule(FaultKind.LATE_RESET, route=CREATE, delay_s=0.3)])
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("POST", "/v1/batch/jobs", json=JOB_BODY)
    assert len(api.emu.jobs()) == 1  # it took effect before the connection went


async def test_latency_before_has_no_effect_once_the_client_left(api: Api) -> None:
    """The contrast: ``latency`` reads the body after the delay, so nothing is created."""
    api.emu.set_faults([FaultRule(FaultKind.LATENCY, route=CREATE, delay_s=0.5)])
    with pytest.raises(asyncio.TimeoutError):
        await api.call("POST", "/v1/batch/jobs", json=JOB_BODY, timeout=GIVE_UP)
    await asyncio.sleep(0.8)
    assert api.emu.jobs() == []


def test_late_faults_parse_and_apply_before_the_handler_only() -> None:
    rule = parse_fault_spec("late_reset:0.3,route=POST /v1/batch/jobs,delay=8,limit=2")
    assert rule == FaultRule(
        FaultKind.LATE_RESET, probability=0.3, route=CREATE, delay_s=8.0, limit=2
    )
    with pytest.raises(ValueError, match="phase=before"):
        parse_fault_spec("late:1,phase=after")
    with pytest.raises(ValueError, match="phase=before"):
        FaultRule(FaultKind.LATE, phase=Phase.AFTER)


@pytest.mark.parametrize("status", [400, 422, 404])
async def test_a_create_naming_an_unknown_input_file(status: int) -> None:
    config = stepped_config(behaviour=Behaviour(missing_input_status=status))
    async with serve(config) as emu, aiohttp.ClientSession() as session:
        api = Api(session, emu)
        file_id = str(uuid.uuid4())
        body = {"endpoint": "/v1/chat/completions", "model": "m", "input_files": [file_id]}
        got, answer, _ = await api.call("POST", "/v1/batch/jobs", json=body)
    assert got == status
    assert answer["message"] == f"File {file_id} not found"  # the same words in each case
    assert emu.jobs() == []


def test_missing_input_status_is_checked() -> None:
    with pytest.raises(ValueError, match="missing_input_status"):
        Behaviour(missing_input_status=500)
