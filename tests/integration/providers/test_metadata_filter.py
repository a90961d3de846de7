"""The jobs-list metadata filter is checked by the client too: a server that ignores it (the
real server's handling is unverified) never makes batchd adopt or cancel unrelated jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from batchd.emulator import Behaviour, Emulator, FaultKind, FaultRule, Phase, serve
from batchd.models import JobState
from batchd.providers.base import JobFilter
from batchd.providers.mistral import MistralProvider
from batchd.providers.mistral_models import MistralJobSpec
from tests.integration.providers.conftest import emulator_config, fast_settings
from tests.unit.loops.conftest import World, request_lines

CHAT = "/v1/chat/completions"


@pytest.fixture
async def careless() -> AsyncIterator[Emulator]:
    """An emulator whose jobs list ignores the metadata filter."""
    async with serve(emulator_config(behaviour=Behaviour(metadata_filter="ignore"))) as emu:
        yield emu


@pytest.fixture
def provider(careless: Emulator, session: aiohttp.ClientSession) -> MistralProvider:
    return MistralProvider(fast_settings(careless.url), session)


async def tagged(provider: MistralProvider, tag: str) -> str:
    spec = MistralJobSpec(
        endpoint=CHAT,
        model="m",
        requests=({"custom_id": "a", "body": {"messages": []}},),
        metadata={"batchd_job": tag, "team": "ml"},
    )
    return (await provider.create_job(spec)).id


async def test_list_and_iter_return_only_matching_jobs(provider: MistralProvider) -> None:
    ids = {tag: await tagged(provider, tag) for tag in ("a", "b", "c", "b2", "d")}
    wanted = JobFilter(metadata={"batchd_job": "b"}, page_size=2)

    with capture_logs() as logs:
        page = await provider.list_jobs(JobFilter(metadata={"batchd_job": "b"}))
    assert [j.id for j in page.jobs] == [ids["b"]]
    assert page.total == 5  # the server's count: an upper bound when it ignored the filter
    assert {"event": "provider.metadata_filter_ignored", "dropped": 4}.items() <= logs[0].items()

    assert [j.id async for j in provider.iter_jobs(wanted)] == [ids["b"]]  # over 3 pages
    assert provider.calls["list_jobs"] == 4
    both = JobFilter(metadata={"batchd_job": "c", "team": "ml"}, page_size=2)
    assert [j.id async for j in provider.iter_jobs(both)] == [ids["c"]]
    assert [j.id async for j in provider.iter_jobs(JobFilter(page_size=2))] == [
        ids[t] for t in ("d", "b2", "c", "b", "a")
    ]
    assert (await provider.list_jobs(JobFilter(metadata={"batchd_job": "zz"}))).jobs == ()


async def test_reconcile_adopts_its_own_job_and_cancels_nothing(
    tmp_path: Path, careless: Emulator, provider: MistralProvider
) -> None:
    world = World(tmp_path)
    world.submitter.set_providers({"fake": provider})
    others = [await tagged(provider, tag) for tag in ("other-1", "other-2")]
    sub = await world.accept("one.jsonl", request_lines(3))
    reset = FaultRule(FaultKind.RESET, route="POST /v1/batch/jobs", phase=Phase.AFTER, limit=1)
    careless.set_faults([reset])  # created, but the answer is lost: reconcile
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    assert job.state is JobState.CREATING

    world.clock.advance(10)
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    mine = [j["id"] for j in careless.jobs() if j["metadata"].get("batchd_job") == job.id]
    assert job.state is JobState.PENDING and [job.provider_job_id] == mine
    assert provider.calls["create_job"] == 3  # the two others and this one, sent once
    assert provider.calls["cancel_job"] == 0
    assert [careless.job(i)["status"] for i in others] == ["QUEUED", "QUEUED"]  # type: ignore[index]
