"""``kind = "emulator"`` with ``emulate = "anthropic"``: the Anthropic emulator in-process
behind an ``AnthropicProvider``; and ``kind = "anthropic"``'s own setting."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from batchd.errors import ConfigError
from batchd.models import TERMINAL
from batchd.providers.anthropic import AnthropicProvider
from batchd.providers.base import ChunkInput, JobSpec, ResultRefs
from batchd.providers.registry import open_provider
from tests.unit.config.helpers import load

ROUTE = "[[routes]]\nname = 'r'\nspool = '/srv/r'\nprovider = 'p'\n"


async def test_an_emulator_provider_can_emulate_anthropic(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    text = "[providers.p]\nkind = 'emulator'\nemulate = 'anthropic'\nemulator_speed = 1000\n"
    settings = load(tmp_path, text + ROUTE).provider_settings("p")
    async with open_provider(settings, session) as provider:
        assert isinstance(provider, AnthropicProvider) and provider.staging == "inline"
        chunk = tmp_path / "chunk.jsonl"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        chunk.write_text(json.dumps({"custom_id": "a b", "body": body}) + "\n")
        given = ChunkInput(chunk, "job-1", "/v1/chat/completions", "claude-test")
        snap = await provider.create_job(JobSpec("/v1/chat/completions", input=given))
        provider.emulator.advance(3600)
        await provider.emulator.settle()
        ended = await provider.get_job(snap.id)
        assert ended.state in TERMINAL and ended.counts.succeeded == 1
        refs = ResultRefs(snap.id, ended.output_file, None, chunk, "job-1")
        [got] = await provider.fetch_results(refs, tmp_path / "out")
        assert json.loads(got.path.read_text())["custom_id"] == "a b"


async def test_the_anthropic_version_is_a_setting_of_the_kind(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    text = "[providers.p]\nkind = 'anthropic'\nanthropic_version = '2026-10-21'\n"
    settings = load(tmp_path, text + ROUTE, ANTHROPIC_API_KEY="sk-ant-x").provider_settings("p")
    assert settings.base_url == "https://api.anthropic.com"
    async with open_provider(settings, session) as provider:
        assert isinstance(provider, AnthropicProvider)
        assert provider.http.version == "2026-10-21"


def test_a_bad_anthropic_version_names_the_key(tmp_path: Path) -> None:
    text = "[providers.p]\nkind = 'anthropic'\nanthropic_version = 'latest'\n"
    with pytest.raises(ConfigError, match="anthropic_version"):
        load(tmp_path, text + ROUTE, ANTHROPIC_API_KEY="sk-ant-x")
