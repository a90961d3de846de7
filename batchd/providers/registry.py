"""Provider kinds, registered by name; an implementation is imported only when one is opened.

A kind is a ``ProviderKind``: its name (``kind = "..."`` in ``[providers.<name>]``), where its
opener lives (``"module:function"``, imported lazily so that the CLI and the daemon pay only for
what they use), how its API key is found, its default base URL and its own settings keys (a
``kind_options.KindOptions`` model, ``options="module:Class"``). A new provider adds its
module, one ``register_kind`` line below, and its place in the provider contract suite
(``tests/integration/provider_contract``). Kinds:

- ``mistral``: ``MistralProvider`` at ``settings.base_url`` with ``settings.api_key``.
- ``anthropic``: ``AnthropicProvider`` (Message Batches, requests inline) at ``settings.base_url``.
- ``openai``: ``OpenAIProvider`` (``https://api.openai.com/v1``, key ``OPENAI_API_KEY``; its
  settings: ``openai_options.OpenAISettings``; its limits: ``OPENAI_LIMITS``).
- ``emulator``: starts the in-process emulator and points a ``MistralProvider`` at it
  (``batchd.providers.emulated``; its settings: ``emulator_options.EmulatorOptions``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, cast

from batchd.errors import ConfigError
from batchd.providers.base import BatchProvider, ProviderLimits, ProviderSettings

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
    # The key's default credential name is "<provider name>_api_key" (``needs_key`` only).
    base_url: str = ""  # the API's default root ("" for a kind that needs none)
    options: str | None = None  # "module:Class", a ``KindOptions`` model of its own keys
    endpoints: tuple[str, ...] = ()  # what a route on this kind may name as its endpoint
    # Per job: the defaults of [providers.*] max_requests_per_job / max_bytes_per_job, and
    # the most they may be set to; its metadata limits.
    limits: ProviderLimits = ProviderLimits()

    def open(self) -> Opener:
        return cast(Opener, _load(self.opener))

    def options_model(self) -> Any:
        """The kind's settings model (a ``KindOptions`` subclass), or None when it has none."""
        return None if self.options is None else _load(self.options)


def _load(where: str) -> Any:
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


KINDS: Final[dict[str, ProviderKind]] = {}


def register_kind(kind: ProviderKind) -> None:
    """Add a kind; registering the same name again with other details is a programming error."""
    known = KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"provider kind {kind.name!r} is already registered as {known}")


def known_endpoints() -> list[str]:
    """Every endpoint some registered kind serves (what a route or a sidecar may name)."""
    return sorted({e for kind in KINDS.values() for e in kind.endpoints})


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
    if not settings.base_url:
        settings = replace(settings, base_url=kind.base_url)
    return kind.open()(settings, session)


MISTRAL_ENDPOINTS: Final = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/fim/completions",
    "/v1/moderations",
    "/v1/chat/moderations",
    "/v1/ocr",
    "/v1/classifications",
    "/v1/chat/classifications",
    "/v1/conversations",
    "/v1/audio/transcriptions",
)

register_kind(
    ProviderKind(
        "mistral",
        "batchd.providers.mistral:open_mistral",
        key_env="MISTRAL_API_KEY",
        base_url="https://api.mistral.ai",
        endpoints=MISTRAL_ENDPOINTS,
    )
)
OPENAI_ENDPOINTS: Final = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
)
OPENAI_LIMITS: Final = ProviderLimits(
    max_requests_per_job=50_000,
    # 200 MB per input file; encoding adds ``method`` and ``url`` (and perhaps the model) to
    # each neutral line, so chunks stop well short of it.
    max_bytes_per_job=180_000_000,
    max_metadata_key_chars=64,
    max_metadata_value_chars=512,
)
register_kind(
    ProviderKind(
        "openai",
        "batchd.providers.openai:open_openai",
        key_env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        options="batchd.providers.openai_options:OpenAISettings",
        endpoints=OPENAI_ENDPOINTS,
        limits=OPENAI_LIMITS,
    )
)
register_kind(
    ProviderKind(
        "emulator",
        "batchd.providers.emulated:open_emulator",
        needs_key=False,
        options="batchd.providers.emulator_options:EmulatorOptions",
        endpoints=MISTRAL_ENDPOINTS,  # what it emulates (Mistral's API)
    )
)
register_kind(
    ProviderKind(
        "anthropic",
        "batchd.providers.anthropic:open_anthropic",
        key_env="ANTHROPIC_API_KEY",
        base_url="https://api.anthropic.com",
        options="batchd.providers.anthropic_options:AnthropicOptions",
        # Anthropic's one endpoint; /v1/chat/completions for OpenAI-style lines naming it
        endpoints=("/v1/messages", "/v1/chat/completions"),
        # 100,000 requests and 256 MB a batch, less room for batchd's ids and the translation
        limits=ProviderLimits(max_requests_per_job=100_000, max_bytes_per_job=240_000_000),
    )
)
