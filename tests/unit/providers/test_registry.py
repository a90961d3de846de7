"""The lazy registry picks an implementation by kind."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from batchd.errors import ConfigError
from batchd.providers.base import BatchProvider, ProviderSettings
from batchd.providers.mistral import MistralProvider
from batchd.providers.registry import REGISTRY, open_provider, provider_kinds
from batchd.secret import Secret


def test_kinds() -> None:
    assert provider_kinds() == ["emulator", "mistral"]
    assert set(REGISTRY) == {"emulator", "mistral"}


async def test_mistral_kind_gives_a_mistral_provider() -> None:
    settings = ProviderSettings(name="main", base_url="http://127.0.0.1:1/", api_key=Secret("k"))
    async with aiohttp.ClientSession() as session, open_provider(settings, session) as provider:
        assert isinstance(provider, MistralProvider)
        assert isinstance(provider, BatchProvider)
        assert provider.name == "main"
        assert provider.http.base_url == "http://127.0.0.1:1"


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
    settings = ProviderSettings(name="x", kind="openai", api_key=Secret("k"))  # type: ignore[arg-type]
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
