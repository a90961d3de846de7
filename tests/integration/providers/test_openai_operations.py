"""``OpenAIProvider`` over loopback HTTP to the OpenAI emulator: every operation, the walk that
finds a batch from its tag without a metadata filter, results, and the organisation headers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from batchd.emulator.openai import OpenAIEmulator, serve_openai
from batchd.errors import AuthError, NotFound
from batchd.models import TERMINAL, JobState
from batchd.providers import openai_wire as wire
from batchd.providers.base import JobSpec, ResultRefs, TagQuery
from batchd.providers.openai import OpenAIProvider
from batchd.secret import Secret
from tests.integration.providers.conftest import KEY, emulator_config, fast_settings

CHAT = "/v1/chat/completions"


@pytest.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    async with serve_openai(emulator_config()) as running:
        yield running


@pytest.fixture
async def provider(emu: OpenAIEmulator) -> AsyncIterator[OpenAIProvider]:
    async with aiohttp.ClientSession() as session:
        yield OpenAIProvider(
            fast_settings(emu.url + "/v1"), session, organization="org-7", project="proj-7"
        )


def _input(tmp_path: Path, n: int, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    lines = [
        wire.encode_line(
            f"q{i}", {"messages": [{"role": "user", "content": f"q {i}"}]}, CHAT, "gpt-4o-mini"
        )
        for i in range(n)
    ]
    path.write_bytes(b"".join(lines))
    return path


async def _create(provider: OpenAIProvider, tmp_path: Path, tag: dict[str, str], n: int = 3):
    uploaded = await provider.upload_file(_input(tmp_path, n), filename=f"batchd-{tag}.jsonl")
    spec = JobSpec(endpoint=CHAT, input_files=(uploaded.id,), metadata=tag)
    return await provider.create_job(spec)


async def _finish(provider: OpenAIProvider, emu: OpenAIEmulator, batch_id: str):
    for _ in range(100):
        await emu.settle()
        job = await provider.get_job(batch_id)
        if job.state in TERMINAL:
            return job
        emu.advance(20)
    raise AssertionError("the batch did not end")


async def test_files(provider: OpenAIProvider, tmp_path: Path) -> None:
    path = _input(tmp_path, 2)
    uploaded = await provider.upload_file(path, filename="batchd-job-1-0.jsonl")
    assert (uploaded.filename, uploaded.size_bytes, uploaded.purpose) == (
        "batchd-job-1-0.jsonl",
        path.stat().st_size,
        "batch",
    )
    await provider.upload_file(path, filename="other.jsonl")
    assert [f.id for f in await provider.find_files("JOB-1")] == [uploaded.id]
    assert (await provider.get_file(uploaded.id)).id == uploaded.id
    target = tmp_path / "copy.jsonl"
    assert await provider.download_file(uploaded.id, target) == path.stat().st_size
    assert target.read_bytes() == path.read_bytes()
    await provider.delete_file(uploaded.id)
    with pytest.raises(NotFound):
        await provider.get_file(uploaded.id)


async def test_create_track_and_fetch_results(
    provider: OpenAIProvider, emu: OpenAIEmulator, tmp_path: Path
) -> None:
    created = await _create(provider, tmp_path, {"batchd": "i1", "batchd_job": "j1"})
    assert (created.state, created.raw_status) == (JobState.PENDING, "validating")
    assert created.metadata == {"batchd": "i1", "batchd_job": "j1"}
    ended = await _finish(provider, emu, created.id)
    assert ended.state is JobState.SUCCEEDED
    assert (ended.counts.total, ended.counts.succeeded, ended.counts.failed) == (3, 3, 0)
    assert ended.usage is not None and ended.usage["output_tokens"] == 48
    refs = ResultRefs(ended.id, ended.output_file, ended.error_file)
    fetched = await provider.fetch_results(refs, tmp_path / "results")
    assert [f.path.name for f in fetched] == ["output.jsonl"]
    lines = [provider.parse_result_line(raw) for raw in fetched[0].path.read_bytes().splitlines()]
    assert sorted(line.custom_id for line in lines) == ["q0", "q1", "q2"]
    assert all(line.ok for line in lines)
    assert emu.headers_seen()[("openai-organization", "org-7")] >= 4
    assert emu.headers_seen()[("openai-project", "proj-7")] >= 4


async def test_find_tagged_walks_newest_first_and_stops_at_the_intent_time(
    provider: OpenAIProvider, emu: OpenAIEmulator, tmp_path: Path
) -> None:
    old = await _create(provider, tmp_path, {"batchd": "i1", "batchd_job": "old"})
    emu.advance(3600)
    created_after = emu.now()
    wanted = await _create(provider, tmp_path, {"batchd": "i1", "batchd_job": "j2"})
    for n in range(5):
        await _create(provider, tmp_path, {"batchd": "i1", "batchd_job": f"other{n}"})
    provider.calls.clear()

    found = [j.id async for j in provider.find_tagged(TagQuery({"batchd_job": "j2"}, page_size=2))]
    assert found == [wanted.id]
    mine = TagQuery({"batchd": "i1"}, created_after=created_after, page_size=2)
    listed = [j.id async for j in provider.find_tagged(mine)]
    assert old.id not in listed and len(listed) == 6
    assert provider.calls["list_jobs"] == 4 + 4  # 8 batches / 2 a page; then stopped at `old`
    everything = [j.id async for j in provider.find_tagged(TagQuery({"batchd": "i1"}))]
    assert everything[-1] == old.id

    active = TagQuery({"batchd": "i1"}, states=(JobState.CANCELLING,))
    assert [j async for j in provider.find_tagged(active)] == []


async def test_cancel_then_again_and_after_the_end(
    provider: OpenAIProvider, emu: OpenAIEmulator, tmp_path: Path
) -> None:
    created = await _create(provider, tmp_path, {"batchd_job": "c"}, n=200)
    await emu.settle()
    emu.advance(11)
    assert (await provider.cancel_job(created.id)).state is JobState.CANCELLING
    assert (await provider.cancel_job(created.id)).state is JobState.CANCELLING
    ended = await _finish(provider, emu, created.id)
    assert ended.state is JobState.CANCELLED
    assert (await provider.cancel_job(created.id)).state is JobState.CANCELLED
    done = await _finish(provider, emu, (await _create(provider, tmp_path, {"x": "1"})).id)
    assert (await provider.cancel_job(done.id)).state is JobState.SUCCEEDED  # 409: moot


async def test_failed_batch_surfaces_its_errors(
    provider: OpenAIProvider, emu: OpenAIEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n{oops\n'
    )
    uploaded = await provider.upload_file(path)
    created = await provider.create_job(JobSpec(endpoint=CHAT, input_files=(uploaded.id,)))
    failed = await _finish(provider, emu, created.id)
    assert failed.state is JobState.FAILED
    assert failed.error_codes == ("invalid_json_line",)
    assert [e.message for e in failed.errors] == [
        "invalid_json_line: This line is not parseable as valid JSON. (line 2)"
    ]
    assert not failed.retry_later


async def test_a_refused_key_is_an_auth_error(emu: OpenAIEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = OpenAIProvider(fast_settings(emu.url + "/v1", api_key=Secret("nope")), session)
        with pytest.raises(AuthError) as refused:
            await wrong.probe()
    assert "nope" not in str(refused.value) and KEY not in str(refused.value)


def test_result_lines_of_every_kind() -> None:
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {"x": 1}}, "error": None}
    http_error = {
        "custom_id": "b",
        "response": {"status_code": 400, "body": {"error": {"message": "no", "code": None}}},
        "error": None,
    }
    never_ran = {"custom_id": "c", "response": None, "error": {"code": "batch_expired"}}
    parsed = [wire.parse_result_line(json.dumps(x).encode()) for x in (ok, http_error, never_ran)]
    assert [(p.custom_id, p.ok) for p in parsed] == [("a", True), ("b", False), ("c", False)]
    assert parsed[1].error == {"message": "no", "code": None}
    assert parsed[2].status_code is None
