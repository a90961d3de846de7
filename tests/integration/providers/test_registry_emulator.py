"""``open_provider`` with kind ``emulator``: an in-process emulator behind a MistralProvider."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from batchd.errors import AuthError
from batchd.models import JobState
from batchd.providers.base import JobFilter, JobSpec, ProviderSettings
from batchd.providers.emulator_options import EmulatorOptions
from batchd.providers.mistral import MistralProvider
from batchd.providers.registry import open_provider
from batchd.secret import Secret
from tests.integration.providers.conftest import chat_lines, fast_settings


async def test_emulator_kind_serves_a_working_provider(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    options = EmulatorOptions(emulator_speed=500.0, emulator_seed=3)
    settings = ProviderSettings(
        name="demo", kind="emulator", options=options, requests_per_second=0
    )
    async with open_provider(settings, session) as provider:
        assert isinstance(provider, MistralProvider)
        emu = provider.emulator
        assert emu.config.speed == 500.0 and emu.config.seed == 3
        assert provider.http.base_url == emu.url
        (tmp_path / "in.jsonl").write_bytes(chat_lines(2))
        ref = await provider.upload_file(tmp_path / "in.jsonl")
        job = await provider.create_job(
            JobSpec(endpoint="/v1/chat/completions", model="m", input_files=(ref.id,))
        )
        assert job.state is JobState.PENDING
        assert (await provider.list_jobs(JobFilter())).total == 1

        # the emulator accepts only the key the registry generated for it
        stranger = MistralProvider(fast_settings(emu.url, api_key=Secret("guess")), session)
        with pytest.raises(AuthError):
            await stranger.list_jobs(JobFilter())
        url = emu.url
    with pytest.raises(aiohttp.ClientError):  # stopped with the context
        async with session.get(url + "/_emulator/health"):
            pass
    assert not session.closed
