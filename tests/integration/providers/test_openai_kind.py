"""Kind ``openai`` through the registry: ``kind = "emulator"`` with ``emulate = "openai"`` serves
an ``OpenAIProvider`` in-process; a chunk of neutral lines is encoded in OpenAI's line format
(the route's model filling the bodies that name none) and runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from batchd.errors import AuthError, ConfigError
from batchd.models import TERMINAL, JobState
from batchd.providers.base import ChunkInput, JobSpec, ProviderSettings, ResultRefs
from batchd.providers.emulator_options import EmulatorOptions
from batchd.providers.openai import OpenAIProvider
from batchd.providers.openai_options import OpenAISettings
from batchd.providers.registry import open_provider
from batchd.secret import Secret
from tests.integration.providers.conftest import chat_lines, fast_settings

CHAT = "/v1/chat/completions"


async def test_an_emulated_openai_route_runs_a_chunk_end_to_end(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    options = EmulatorOptions(emulator_speed=2000.0, emulator_seed=3, emulate="openai")
    settings = ProviderSettings(name="oai", kind="emulator", options=options, requests_per_second=0)
    chunk_path = tmp_path / "chunk.jsonl"
    chunk_path.write_bytes(chat_lines(3))
    lines = chunk_path.read_bytes().splitlines()
    own = json.loads(lines[1])
    own["body"]["model"] = "gpt-4.1-nano"
    chunk_path.write_bytes(b"\n".join([lines[0], json.dumps(own).encode(), lines[2]]) + b"\n")
    async with open_provider(settings, session) as provider:
        assert isinstance(provider, OpenAIProvider)
        assert provider.staging == "file"
        chunk = ChunkInput(chunk_path, "job-1", CHAT, "gpt-4o-mini")
        encoded = provider.encode_input(chunk, tmp_path / "encoded.jsonl")
        sent = [json.loads(line) for line in encoded.read_bytes().splitlines()]
        assert [(s["custom_id"], s["method"], s["url"]) for s in sent] == [
            (f"q{i}", "POST", CHAT) for i in range(3)
        ]
        assert [s["body"]["model"] for s in sent] == ["gpt-4o-mini", "gpt-4.1-nano", "gpt-4o-mini"]

        ref = await provider.upload_file(encoded, filename="batchd-job-1.jsonl")
        job = await provider.create_job(
            JobSpec(endpoint=CHAT, input_files=(ref.id,), metadata={"batchd_job": "job-1"})
        )
        for _ in range(200):
            job = await provider.get_job(job.id)
            if job.state in TERMINAL:
                break
            await provider.emulator.settle()
            provider.emulator.advance(30)
        # one model per file: OpenAI refuses a file mixing two
        assert job.state is JobState.FAILED
        assert [e.message.split(":")[0] for e in job.errors] == ["model_mismatch"]

        chunk_path.write_bytes(chat_lines(3))
        encoded = provider.encode_input(chunk, tmp_path / "encoded.jsonl")
        ref = await provider.upload_file(encoded, filename="batchd-job-1.jsonl")
        job = await provider.create_job(JobSpec(endpoint=CHAT, input_files=(ref.id,)))
        for _ in range(200):
            job = await provider.get_job(job.id)
            if job.state in TERMINAL:
                break
            await provider.emulator.settle()
            provider.emulator.advance(30)
        assert job.state is JobState.SUCCEEDED
        refs = ResultRefs(job.id, job.output_file, job.error_file)
        fetched = await provider.fetch_results(refs, tmp_path / "results")
        assert len(fetched[0].path.read_bytes().splitlines()) == 3
        assert await provider.delete_results(refs) == [job.output_file]

        stranger = OpenAIProvider(
            fast_settings(provider.emulator.url + "/v1", api_key=Secret("guess")), session
        )
        with pytest.raises(AuthError):
            await stranger.probe()


async def test_kind_openai_needs_a_key(session: aiohttp.ClientSession) -> None:
    settings = ProviderSettings(name="oai", kind="openai", options=OpenAISettings())
    with pytest.raises(ConfigError):
        async with open_provider(settings, session):
            pass
