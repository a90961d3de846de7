"""Provider kinds, registered by name; an implementation is imported only when one is opened.

A kind is a ``ProviderKind``: its name (``kind = "..."`` in ``[providers.<name>]``), where its
opener lives (``"module:function"``, imported lazily so that the CLI and the daemon pay only for
what they use) and how its API key is found. A new provider adds its module, one
``register_kind`` line below, and its place in the provider contract suite
(``tests/integration/provider_contract``). Kinds:

- ``mistral``: ``MistralProvider`` at ``settings.base_url`` with ``settings.api_key``.
- ``emulator``: starts the in-process emulator and points a ``MistralProvider`` at it
  (``batchd.providers.emulated``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from batchd.errors import ConfigError
from batchd.providers.base import BatchProvider, ProviderSettings

if TYPE_CHECKING:  # aiohttp is imported by the implementations, when one is opened
    import aiohttp

Opener = Callable[
    [ProviderSettings, "aiohttp.ClientSession"], AbstractAsyncContextManager[BatchProvider]
]


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """One kind of provider. ``opener`` is ``"module:function"``, an ``Opener``; it owns none
    of the session (the caller closes it) and raises ``ConfigError`` for a missing key."""

    name: str
    opener: str
    needs_key: bool = True
    key_env: str | None = None  # the environment variable read for the key by default

    def open(self) -> Opener:
        module, _, function = self.opener.partition(":")
        return cast(Opener, getattr(importlib.import_module(module), function))


KINDS: Final[dict[str, ProviderKind]] = {}


def register_kind(kind: ProviderKind) -> None:
    """Add a kind; registering the same name again with other details is a programming error."""
    known = KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"provider kind {kind.name!r} is already registered as {known}")


def provider_kinds() -> list[str]:
    return sorted(KINDS)


def provider_kind(name: str) -> ProviderKind | None:
    return KINDS.get(name)


def open_provider(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AbstractAsyncContextManager[BatchProvider]:
    """Open the provider ``settings`` describe, over ``session`` (owned and closed by the
    caller). Raises ``ConfigError`` for an unknown kind or a missing key."""
    kind = KINDS.get(settings.kind)
    if kind is None:
        raise ConfigError(
            f"provider {settings.name!r}: unknown kind {settings.kind!r} "
            f"(known: {', '.join(provider_kinds())})"
        )
    return kind.open()(settings, session)


register_kind(
    ProviderKind("mistral", "batchd.providers.mistral:open_mistral", key_env="MISTRAL_API_KEY")
)
register_kind(ProviderKind("emulator", "batchd.providers.emulated:open_emulator", needs_key=False))
