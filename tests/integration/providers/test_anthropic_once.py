"""The Anthropic provider on its emulator: creates streamed from the chunk, and exactly once
with no tag on the batch (found again from the chunk after an ambiguous create or a restart,
provisional adoptions confirmed or corrected by the results, never a second create)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from batchd.emulator.anthropic import AnthropicEmulator, serve_anthropic
from batchd.emulator.faults import FaultKind, FaultRule, Phase
from batchd.errors import AuthError, ProviderError, ProviderPermanent
from batchd.models import TERMINAL, JobState
from batchd.providers.anthropic import AnthropicProvider
from batchd.providers.base import ChunkInput, JobSpec, ResultLine, ResultRefs, TagQuery
from batchd.secret import Secret
from tests.integration.providers.conftest import emulator_config, fast_settings

ENDPOINT = "/v1/messages"
CREATE = "POST /v1/messages/batches"


@pytest.fixture
async def emu() -> AsyncIterator[AnthropicEmulator]:
    async with serve_anthropic(emulator_config()) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def provider(emu: AnthropicEmulator, session: aiohttp.ClientSession) -> AnthropicProvider:
    """A provider as a fresh process has it: knowing no batch."""
    return AnthropicProvider(fast_settings(emu.url), session)


def chunk(tmp_path: Path, job_id: str, n: int, max_tokens: int | None = 4) -> ChunkInput:
    path = tmp_path / f"{job_id}.jsonl"
    lines = []
    for i in range(n):
        body: dict[str, object] = {"messages": [{"role": "user", "content": f"{job_id} q{i}"}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        lines.append(json.dumps({"custom_id": f"{job_id}/q {i}", "body": body}) + "\n")
    path.write_text("".join(lines))
    return ChunkInput(path, job_id, ENDPOINT, "claude-test")


def spec(given: ChunkInput) -> JobSpec:
    return JobSpec(ENDPOINT, given.model, metadata={"batchd_job": given.job_id}, input=given)


async def lookup(p: AnthropicProvider, given: ChunkInput) -> list[str]:
    query = TagQuery({"batchd_job": given.job_id}, input=given)
    return [snap.id async for snap in p.find_tagged(query)]


async def end_all(emu: AnthropicEmulator) -> None:
    emu.advance(100_000)
    await emu.settle()


async def fetch(
    p: AnthropicProvider, batch_id: str, given: ChunkInput, folder: Path
) -> dict[str, ResultLine]:
    refs = ResultRefs(batch_id, batch_id, None, given.path, given.job_id)
    [got] = await p.fetch_results(refs, folder)
    return {
        line.custom_id: line
        for line in map(p.parse_result_line, got.path.read_bytes().splitlines())
    }


async def test_a_create_answered_with_500_is_found_again_after_a_restart(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    given = chunk(tmp_path, "job-a", 3)
    emu.set_faults([FaultRule(FaultKind.INTERNAL, route=CREATE, phase=Phase.AFTER, limit=1)])
    with pytest.raises(ProviderError) as info:
        await provider(emu, session).create_job(spec(given))
    assert info.value.status == 500
    [made] = emu.batches()

    restarted = provider(emu, session)
    with structlog.testing.capture_logs() as logs:
        assert await lookup(restarted, given) == [made["id"]]
    assert [e["event"] for e in logs if e["event"].startswith("anthropic.")] == [
        "anthropic.adopted_provisionally"
    ]
    await end_all(emu)
    results = await fetch(restarted, made["id"], given, tmp_path / "res")
    assert sorted(results) == ["job-a/q 0", "job-a/q 1", "job-a/q 2"]
    assert len(emu.batches()) == 1


async def test_a_create_refused_before_it_happened_is_not_found(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    given = chunk(tmp_path, "job-b", 2)
    other = chunk(tmp_path, "job-other", 3)  # another size: never a candidate
    await provider(emu, session).create_job(spec(other))
    emu.set_faults([FaultRule(FaultKind.INTERNAL, route=CREATE, limit=1)])
    with pytest.raises(ProviderError):
        await provider(emu, session).create_job(spec(given))
    assert await lookup(provider(emu, session), given) == []


async def test_an_ended_candidate_is_decided_by_its_results(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mine, foreign = chunk(tmp_path, "job-c", 2), chunk(tmp_path, "job-f", 2)
    await provider(emu, session).create_job(spec(foreign))  # older, same size, not ours
    await provider(emu, session).create_job(spec(mine))
    await end_all(emu)
    with structlog.testing.capture_logs() as logs:
        found = await lookup(provider(emu, session), mine)
    assert found == [emu.batches()[1]["id"]]
    assert "anthropic.adopted" in [e["event"] for e in logs]


async def test_two_chunks_of_one_size_adopted_crosswise_are_corrected_by_their_results(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Both creates in doubt, then a restart: the lookups cannot tell the two running batches
    apart and pair them the wrong way; the results tell, and each job gets its own."""
    first, second = chunk(tmp_path, "job-1", 2), chunk(tmp_path, "job-2", 2)
    emu.set_faults([FaultRule(FaultKind.INTERNAL, route=CREATE, phase=Phase.AFTER)])
    for given in (first, second):
        with pytest.raises(ProviderError):
            await provider(emu, session).create_job(spec(given))
    batch_1, batch_2 = (b["id"] for b in emu.batches())
    restarted = provider(emu, session)
    assert await lookup(restarted, second) == [batch_1]  # the oldest candidate: wrong
    assert await lookup(restarted, first) == [batch_2]  # the one left: wrong too
    await end_all(emu)

    with structlog.testing.capture_logs() as logs:
        got_2 = await fetch(restarted, batch_1, second, tmp_path / "r2")
        got_1 = await fetch(restarted, batch_2, first, tmp_path / "r1")
    assert sorted(got_1) == ["job-1/q 0", "job-1/q 1"]
    assert sorted(got_2) == ["job-2/q 0", "job-2/q 1"]
    events = [e["event"] for e in logs]
    assert events.count("anthropic.adoption_corrected") == 2
    # Deleting is for the batch whose results are the job's only.
    refs = ResultRefs(batch_1, batch_1, None, second.path, second.job_id)
    assert await restarted.delete_results(refs) == []
    assert len(emu.batches()) == 2


async def test_a_job_never_created_refuses_the_foreign_batch_it_adopted(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mine, foreign = chunk(tmp_path, "job-m", 2), chunk(tmp_path, "job-x", 2)
    await provider(emu, session).create_job(spec(foreign))
    [adopted] = await lookup(provider(emu, session), mine)
    await end_all(emu)
    with pytest.raises(ProviderPermanent, match="never sent"):
        await fetch(provider(emu, session), adopted, mine, tmp_path / "res")
    assert len(emu.batches()) == 1  # and nothing was created


async def test_a_large_chunk_is_streamed_whole_and_translated(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    given = chunk(tmp_path, "job-l", 5_000)
    broken = chunk(tmp_path, "job-n", 2, max_tokens=None)  # the API refuses: errored results
    p = provider(emu, session)
    big = await p.create_job(spec(given))
    small = await p.create_job(spec(broken))
    assert big.counts.total == 5_000 and big.state is JobState.RUNNING
    await end_all(emu)
    ended = await p.get_job(big.id)
    assert ended.state in TERMINAL and ended.counts.succeeded == 5_000
    results = await fetch(p, big.id, given, tmp_path / "big")
    assert len(results) == 5_000 and all(line.ok for line in results.values())
    refused = await fetch(p, small.id, broken, tmp_path / "small")
    assert {line.status_code for line in refused.values()} == {400}


async def test_the_api_key_never_shows_in_errors_or_logs(
    emu: AnthropicEmulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    canary = "sk-ant-canary-5f3b9e"
    p = AnthropicProvider(fast_settings(emu.url, api_key=Secret(canary)), session)
    with structlog.testing.capture_logs() as logs, pytest.raises(AuthError) as info:
        await p.create_job(spec(chunk(tmp_path, "job-k", 1)))
    assert canary not in repr(info.value) and canary not in str(info.value.body)
    assert canary not in repr(logs)
