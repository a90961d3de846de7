"""Provider implementations chosen by name (``ProviderSettings.kind``) from a lazy registry.

An implementation module is imported only when a provider of its kind is opened, so that the
CLI and the daemon pay only for what they use. Kinds:

- ``mistral``: ``MistralProvider`` at ``settings.base_url`` with ``settings.api_key``.
- ``emulator``: starts the in-process emulator (``batchd.emulator.serve``) and points a
  ``MistralProvider`` at it with a freshly generated key (the emulator only accepts that key);
  the emulator stops when the context exits. The handle is ``provider.emulator``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from batchd.errors import ConfigError
from batchd.providers.base import BatchProvider, ProviderSettings
from batchd.secret import Secret

if TYPE_CHECKING:  # aiohttp is imported by the implementations, when one is opened
    import aiohttp

Opener = Callable[
    [ProviderSettings, "aiohttp.ClientSession"], AbstractAsyncContextManager[BatchProvider]
]


@asynccontextmanager
async def _open_mistral(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    from batchd.providers.mistral import MistralProvider

    if not settings.api_key:
        raise ConfigError(f"provider {settings.name!r}: no API key configured")
    yield MistralProvider(settings, session)


@asynccontextmanager
async def _open_emulator(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    from batchd.emulator import EmulatorConfig, serve
    from batchd.providers.mistral import MistralProvider

    key = f"emu-{secrets.token_urlsafe(24)}"
    config = EmulatorConfig(
        api_keys=(key,), speed=settings.emulator_speed, seed=settings.emulator_seed
    )
    async with serve(config) as emulator:
        provider = MistralProvider(
            replace(settings, base_url=emulator.url, api_key=Secret(key)), session
        )
        provider.emulator = emulator
        yield provider


REGISTRY: Final[dict[str, Opener]] = {
    "mistral": _open_mistral,
    "emulator": _open_emulator,
}


def provider_kinds() -> list[str]:
    return sorted(REGISTRY)


def open_provider(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AbstractAsyncContextManager[BatchProvider]:
    """Open the provider ``settings`` describe, over ``session`` (owned and closed by the
    caller). Raises ``ConfigError`` for an unknown kind or a missing key."""
    try:
        opener = REGISTRY[settings.kind]
    except KeyError:
        raise ConfigError(
            f"provider {settings.name!r}: unknown kind {settings.kind!r} "
            f"(known: {', '.join(provider_kinds())})"
        ) from None
    return opener(settings, session)
