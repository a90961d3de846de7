"""The lazy registry picks an implementation by kind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from batchd.errors import ConfigError
from batchd.providers.anthropic import AnthropicProvider
from batchd.providers.base import BatchProvider, ProviderSettings
from batchd.providers.mistral import MistralProvider
from batchd.providers.registry import (
    KINDS,
    ProviderKind,
    open_provider,
    provider_kinds,
    register_kind,
)
from batchd.secret import Secret
from tests.unit.config.helpers import load
from tests.unit.fakes import FakeProvider


def test_kinds() -> None:
    assert {"anthropic", "emulator", "mistral", "openai"} <= set(provider_kinds())
    assert provider_kinds() == sorted(KINDS)


async def test_anthropic_kind_gives_an_anthropic_provider(tmp_path: Path) -> None:
    text = "[providers.claude]\nkind = 'anthropic'\nbase_url = 'http://127.0.0.1:1'\n"
    settings = load(tmp_path, text, ANTHROPIC_API_KEY="sk-ant-test")
    ps = settings.provider_settings("claude")
    assert ps.api_key == Secret("sk-ant-test")
    async with aiohttp.ClientSession() as session, open_provider(ps, session) as provider:
        assert isinstance(provider, AnthropicProvider) and isinstance(provider, BatchProvider)
        assert provider.staging == "inline" and provider.limits.max_requests_per_job == 100_000
        assert provider.limits.max_bytes_per_job <= 256_000_000


async def test_mistral_kind_gives_a_mistral_provider() -> None:
    settings = ProviderSettings(name="main", base_url="http://127.0.0.1:1/", api_key=Secret("k"))
    async with aiohttp.ClientSession() as session, open_provider(settings, session) as provider:
        assert isinstance(provider, MistralProvider)
        assert isinstance(provider, BatchProvider)
        assert provider.name == "main"
        assert provider.http.base_url == "http://127.0.0.1:1"


async def test_a_provider_without_a_base_url_gets_its_kind_s() -> None:
    settings = ProviderSettings(name="main", api_key=Secret("k"))
    async with aiohttp.ClientSession() as session, open_provider(settings, session) as provider:
        assert isinstance(provider, MistralProvider)
        assert provider.http.base_url == KINDS["mistral"].base_url == "https://api.mistral.ai"


async def test_session_is_not_closed_by_the_provider() -> None:
    settings = ProviderSettings(name="main", api_key=Secret("k"))
    async with aiohttp.ClientSession() as session:
        async with open_provider(settings, session):
            pass
        assert not session.closed


async def test_missing_key_is_a_config_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError):
            async with open_provider(ProviderSettings(name="main"), session):
                pass


async def test_unknown_kind_is_a_config_error() -> None:
    settings = ProviderSettings(name="x", kind="nosuch", api_key=Secret("k"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError):
            open_provider(settings, session)


def test_the_registry_imports_implementations_lazily() -> None:
    code = (
        "import sys, batchd.providers.registry; "
        "print(sorted(m for m in sys.modules if m.startswith("
        "('batchd.providers.mistral', 'aiohttp', 'batchd.emulator'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_kind_registered_by_name_is_opened_and_configurable(tmp_path: Path) -> None:
    """A new provider needs its module and one registration: config accepts the kind, the
    key is looked up by its rules, and ``open_provider`` opens it."""
    kind = ProviderKind("contract-echo", f"{__name__}:open_echo", key_env="ECHO_KEY")
    register_kind(kind)
    try:
        register_kind(kind)  # the same again is fine
        with pytest.raises(ValueError, match="already registered"):
            register_kind(ProviderKind("contract-echo", "elsewhere:open"))
        text = "[providers.echo]\nkind = 'contract-echo'\n" + ROUTE
        settings = load(tmp_path, text, ECHO_KEY="echo-key-1")
        ps = settings.provider_settings("echo")
        assert ps.kind == "contract-echo" and ps.api_key == Secret("echo-key-1")
        async with aiohttp.ClientSession() as session, open_provider(ps, session) as provider:
            assert isinstance(provider, FakeProvider) and provider.name == "echo/echo-key-1"
    finally:
        del KINDS["contract-echo"]


def test_an_unknown_kind_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"providers\.m\.kind: .*'emulator'.*'mistral'"):
        load(tmp_path, "[providers.m]\nkind = 'bedrock'\n")


ROUTE = "[[routes]]\nname = 'r'\nspool = '/srv/r'\nprovider = 'echo'\n"


@asynccontextmanager
async def open_echo(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    assert settings.api_key is not None
    yield FakeProvider(name=f"{settings.name}/{settings.api_key.reveal()}")
