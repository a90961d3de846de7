"""Reads survive injected faults; upload and create are never sent twice; the rate limit holds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from batchd.emulator import Emulator, FaultConfig, FaultKind, FaultRule, Phase
from batchd.errors import ProviderTransient
from batchd.models import JobState
from batchd.providers.base import JobFilter, JobSpec
from batchd.providers.mistral import MistralProvider
from batchd.providers.mistral_wire import FileQuery
from tests.integration.providers.conftest import chat_lines, fast_settings, finish

CHAT = "/v1/chat/completions"
MODEL = "mistral-small-latest"

# 20% 5xx (500, 502 as an HTML page, 503), 10% 429, 5% truncated downloads; reproducible.
FAULT_SEED = 3  # a seed whose run injects every kind at least once
FAULTS = FaultConfig(
    rules=(
        FaultRule(FaultKind.INTERNAL, probability=0.08),
        FaultRule(FaultKind.BAD_GATEWAY, probability=0.06),
        FaultRule(FaultKind.UNAVAILABLE, probability=0.06),
        FaultRule(FaultKind.RATE_LIMIT, probability=0.10),
        FaultRule(FaultKind.TRUNCATE, probability=0.05, fraction=0.5),
    ),
    seed=FAULT_SEED,
)


async def _prepare(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> tuple[list[str], list[str]]:
    """Two finished jobs (no faults yet); returns their ids and every file id to download."""
    job_ids: list[str] = []
    file_ids: list[str] = []
    for n in (300, 500):
        path = tmp_path / f"in-{n}.jsonl"
        path.write_bytes(chat_lines(n))
        ref = await provider.upload_file(path, filename=f"fault-run-{n}.jsonl")
        spec = JobSpec(endpoint=CHAT, model=MODEL, input_files=(ref.id,), metadata={"run": "f"})
        job = await finish(provider, emulator, (await provider.create_job(spec)).id)
        assert job.state is JobState.SUCCEEDED and job.output_file
        job_ids.append(job.id)
        file_ids += [ref.id, job.output_file]
    return job_ids, file_ids


async def _reads(
    provider: MistralProvider, job_ids: list[str], file_ids: list[str], out: Path
) -> None:
    for job_id in job_ids:
        assert (await provider.get_job(job_id)).state is JobState.SUCCEEDED
    assert (await provider.list_jobs(JobFilter(metadata={"run": "f"}))).total == 2
    assert len([j async for j in provider.iter_jobs(JobFilter(page_size=1))]) == 2
    assert len(await provider.find_files("fault-run")) == 2
    assert len((await provider.list_files(FileQuery(page_size=2))).files) == 2
    for file_id in file_ids:
        assert (await provider.get_file(file_id)).id == file_id
        await provider.download_file(file_id, out / f"{file_id}.jsonl")
        assert await provider.file_url(file_id)


async def test_every_read_succeeds_under_faults(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    job_ids, file_ids = await _prepare(provider, emulator, tmp_path)
    clean = tmp_path / "clean"
    clean.mkdir()
    for file_id in file_ids:
        await provider.download_file(file_id, clean / f"{file_id}.jsonl")

    emulator.reset_stats()
    emulator.set_faults(FAULTS)
    rounds = 8
    for r in range(rounds):
        out = tmp_path / f"round-{r}"
        out.mkdir()
        await _reads(provider, job_ids, file_ids, out)
        for file_id in file_ids:
            assert (out / f"{file_id}.jsonl").read_bytes() == (
                clean / f"{file_id}.jsonl"
            ).read_bytes()
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{f}.jsonl" for f in file_ids)

    stats = emulator.stats()
    for kind in ("500", "502", "503", "429", "truncate"):
        assert stats.get(f"faults.{kind}", 0) > 0, (kind, stats)
    assert sum(provider.http.retries.values()) == stats["faults_injected"]
    assert provider.http.retries["download_file"] > 0
    print("fault run:", stats, dict(provider.http.retries), dict(provider.calls))


async def test_truncated_downloads_are_retried_from_scratch(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    content = chat_lines(3000)
    (tmp_path / "in.jsonl").write_bytes(content)
    file_id = (await provider.upload_file(tmp_path / "in.jsonl")).id
    rule = FaultRule(FaultKind.TRUNCATE, probability=0.5, fraction=0.3)
    emulator.set_faults(FaultConfig(rules=(rule,), seed=1))
    for i in range(6):
        size = await provider.download_file(file_id, tmp_path / f"out-{i}.jsonl")
        assert size == len(content)
        assert (tmp_path / f"out-{i}.jsonl").read_bytes() == content
    assert emulator.stats()["faults.truncate"] >= 2
    assert provider.http.retries["download_file"] == emulator.stats()["faults.truncate"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(FaultKind.LATENCY, route="POST /v1/batch/jobs", phase=Phase.AFTER, delay_s=1.0),
        FaultRule(FaultKind.RESET, route="POST /v1/batch/jobs", phase=Phase.AFTER),
        FaultRule(FaultKind.UNAVAILABLE, route="POST /v1/batch/jobs", phase=Phase.AFTER),
    ],
    ids=["timeout", "reset", "503-after-effect"],
)
async def test_an_ambiguous_create_is_not_sent_twice(
    emulator: Emulator, session: aiohttp.ClientSession, tmp_path: Path, rule: FaultRule
) -> None:
    provider = MistralProvider(fast_settings(emulator.url, timeout_s=0.3), session)
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_lines(2))
    file_id = (await provider.upload_file(path)).id
    emulator.reset_stats()
    emulator.set_faults([rule])
    spec = JobSpec(endpoint=CHAT, model=MODEL, input_files=(file_id,), metadata={"batchd_job": "j"})
    with pytest.raises(ProviderTransient):
        await provider.create_job(spec)
    emulator.set_faults([])
    assert emulator.stats()["POST /v1/batch/jobs"] == 1
    assert provider.calls["create_job"] == 1
    assert len(emulator.jobs()) == 1
    # the way out: reconcile through the metadata tag
    found = [j async for j in provider.iter_jobs(JobFilter(metadata={"batchd_job": "j"}))]
    assert [j.id for j in found] == [emulator.jobs()[0]["id"]]


async def test_an_ambiguous_upload_is_not_sent_twice(
    emulator: Emulator, provider: MistralProvider, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_lines(2))
    emulator.set_faults([FaultRule(FaultKind.RESET, route="POST /v1/files", phase=Phase.AFTER)])
    with pytest.raises(ProviderTransient):
        await provider.upload_file(path, filename="orphan-1.jsonl")
    emulator.set_faults([])
    assert emulator.stats()["POST /v1/files"] == 1
    assert [f.filename for f in await provider.find_files("orphan-1")] == ["orphan-1.jsonl"]


async def test_rate_limit_spaces_every_call_of_the_provider(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    provider = MistralProvider(fast_settings(emulator.url, requests_per_second=20.0), session)
    emulator.reset_stats()
    started = time.monotonic()
    await asyncio.gather(*(provider.list_jobs(JobFilter()) for _ in range(6)))
    await asyncio.gather(*(provider.list_files() for _ in range(5)))
    elapsed = time.monotonic() - started
    assert emulator.stats()["total"] == 11
    assert elapsed >= 10 * (1 / 20.0) - 0.01  # 11 calls need at least 10 intervals
