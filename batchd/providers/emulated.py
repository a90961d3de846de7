"""Provider kind ``emulator``: the in-process emulator behind a ``MistralProvider`` (or, with
``emulate = "anthropic"``, the Anthropic emulator behind an ``AnthropicProvider``; with
``emulate = "openai"``, the OpenAI emulator behind an ``OpenAIProvider``).

The emulator (``batchd.emulator.serve``) starts when the provider opens, with a freshly generated
key (the only one it accepts), and stops when the context exits. Its handle is
``provider.emulator``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp

from batchd.emulator import EmulatorConfig, serve
from batchd.providers.base import BatchProvider, ProviderSettings
from batchd.providers.emulator_options import EmulatorOptions
from batchd.providers.kind_options import options_of
from batchd.providers.mistral import MistralProvider
from batchd.secret import Secret


@asynccontextmanager
async def open_emulator(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    key = f"emu-{secrets.token_urlsafe(24)}"
    options = options_of(settings, EmulatorOptions)
    config = EmulatorConfig(
        api_keys=(key,), speed=options.emulator_speed, seed=options.emulator_seed
    )
    if options.emulate == "anthropic":
        async with _anthropic(settings, session, config, key) as provider:
            yield provider
        return
    if options.emulate == "openai":
        async with _openai(settings, session, config, key) as provider:
            yield provider
        return
    async with serve(config) as emulator:
        provider = MistralProvider(
            replace(settings, base_url=emulator.url, api_key=Secret(key)), session
        )
        provider.emulator = emulator
        yield provider


@asynccontextmanager
async def _anthropic(
    settings: ProviderSettings, session: aiohttp.ClientSession, config: EmulatorConfig, key: str
) -> AsyncIterator[BatchProvider]:
    from batchd.emulator.anthropic import serve_anthropic
    from batchd.providers.anthropic import AnthropicProvider

    async with serve_anthropic(config) as emulator:
        provider = AnthropicProvider(
            replace(settings, base_url=emulator.url, api_key=Secret(key)), session
        )
        provider.emulator = emulator
        yield provider


@asynccontextmanager
async def _openai(
    settings: ProviderSettings, session: aiohttp.ClientSession, config: EmulatorConfig, key: str
) -> AsyncIterator[BatchProvider]:
    from batchd.emulator.openai import serve_openai
    from batchd.providers.openai import OpenAIProvider

    async with serve_openai(config) as emulator:
        provider = OpenAIProvider(
            replace(settings, base_url=emulator.url + "/v1", api_key=Secret(key)), session
        )
        provider.emulator = emulator
        yield provider
