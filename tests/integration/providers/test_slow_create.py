"""A provider slow to process creates, over real HTTP (issue 12): a create that lands seconds
after the client timed out (or after the connection was dropped) still makes exactly one job;
a create refused because its input file is gone (400/422 naming it, issue 13 item 18) uploads
again instead of failing the chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from batchd.emulator import Behaviour, Emulator, FaultKind, FaultRule, serve
from batchd.models import JobState
from batchd.providers.base import JobSnapshot, JobSpec
from batchd.providers.mistral import MistralProvider
from batchd.submitter import SubmitPolicy
from tests.integration.providers.conftest import emulator_config, fast_settings
from tests.unit.loops.conftest import World, request_lines

CREATE = "POST /v1/batch/jobs"
CLIENT_TIMEOUT_S = 0.5
LATE_S = 2.0  # the create takes effect 1.5 s after the client gave up


def world_on(tmp_path: Path, provider: MistralProvider, grace_s: float) -> World:
    world = World(tmp_path)
    world.submitter.set_providers({"fake": provider})
    world.submitter.set_policy(
        SubmitPolicy(
            retry_base_s=0.2,
            retry_max_s=0.5,
            reconcile_delay_s=0.2,
            reconcile_window_s=grace_s,
            create_timeout_s={"fake": CLIENT_TIMEOUT_S},
        )
    )
    return world


async def run_for(world: World, seconds: float, step_s: float = 0.1) -> None:
    """Run the submitter with its clock following real time (the emulator's delays are real)."""
    for _ in range(int(seconds / step_s)):
        await asyncio.sleep(step_s)
        world.clock.advance(step_s)
        await world.submitter.run_once()


def tagged(emu: Emulator, job_id: str) -> list[str]:
    return [j["id"] for j in emu.jobs() if j["metadata"].get("batchd_job") == job_id]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.parametrize("kind", [FaultKind.LATE, FaultKind.LATE_RESET])
async def test_a_create_landing_after_the_client_timed_out_makes_one_job(
    tmp_path: Path, emulator: Emulator, session: aiohttp.ClientSession, kind: FaultKind
) -> None:
    provider = MistralProvider(fast_settings(emulator.url, timeout_s=CLIENT_TIMEOUT_S), session)
    world = world_on(tmp_path, provider, grace_s=3.0)
    sub = await world.accept("one.jsonl", request_lines(3))
    emulator.set_faults([FaultRule(kind, route=CREATE, delay_s=LATE_S, limit=1)])
    with capture_logs() as logs:
        await world.submitter.run_once()  # the create times out after 0.5 s
        (job,) = await world.jobs(sub.id)
        assert job.state is JobState.CREATING and tagged(emulator, job.id) == []
        await run_for(world, 3.0)
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.PENDING
    assert tagged(emulator, job.id) == [job.provider_job_id]
    assert provider.calls["create_job"] == 1
    events = [e["event"] for e in logs]
    assert "submit.reconcile_missed" in events  # looked up before it landed, and waited
    assert "submit.reconciled" in events


async def test_a_window_shorter_than_the_provider_is_slow_makes_a_duplicate(
    tmp_path: Path, emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    """The control: with no grace, the create is sent again before the late one lands."""
    provider = MistralProvider(fast_settings(emulator.url, timeout_s=CLIENT_TIMEOUT_S), session)
    world = world_on(tmp_path, provider, grace_s=0.0)
    sub = await world.accept("one.jsonl", request_lines(3))
    emulator.set_faults([FaultRule(FaultKind.LATE, route=CREATE, delay_s=LATE_S, limit=1)])
    await world.submitter.run_once()
    await run_for(world, 3.0)
    (job,) = await world.jobs(sub.id)
    assert len(tagged(emulator, job.id)) == 2  # what the window is there to prevent


@pytest.mark.parametrize("status", [400, 422])
async def test_a_create_refused_for_a_gone_input_file_uploads_again(
    tmp_path: Path, session: aiohttp.ClientSession, status: int
) -> None:
    config = emulator_config(behaviour=Behaviour(missing_input_status=status))
    async with serve(config) as emu:
        provider = MistralProvider(fast_settings(emu.url), session)
        world = world_on(tmp_path, provider, grace_s=3.0)
        create = provider.create_job

        async def input_deleted_first(spec: JobSpec) -> JobSnapshot:
            if provider.calls["create_job"] == 0:  # the file expires just before the create
                await provider.delete_file(spec.input_files[0])
            return await create(spec)

        provider.create_job = input_deleted_first  # type: ignore[method-assign]
        sub = await world.accept("one.jsonl", request_lines(3))
        await world.submitter.run_once()
        await world.submitter.run_once()
        (job,) = await world.jobs(sub.id)
        assert job.state is JobState.PENDING, job.last_error
        assert provider.calls["upload_file"] == 2
        assert tagged(emu, job.id) == [job.provider_job_id]
