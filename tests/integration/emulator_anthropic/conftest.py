from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchd.emulator import EmulatorConfig, ProcessingModel
from batchd.emulator.anthropic import AnthropicEmulator, serve_anthropic

KEY = "test-key"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}

# Time only moves when a test says so (speed 1, no jitter): a batch of n requests ends at
# 10 + 10 n emulated seconds; a cancel takes 5.
STEPPED = ProcessingModel(
    queue_s=10, request_s=10, parallelism=1, min_run_s=0, finalize_s=0, cancel_s=5, jitter=0
)


def stepped_config(**changes: Any) -> EmulatorConfig:
    base: dict[str, Any] = {"api_keys": (KEY,), "speed": 1.0, "seed": 7, "processing": STEPPED}
    return EmulatorConfig(**{**base, **changes})


def request(custom_id: str, text: str = "hello", max_tokens: int = 16) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "claude-test",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}],
        },
    }


async def ended(emu: AnthropicEmulator, seconds: float = 10_000.0) -> None:
    emu.advance(seconds)
    await emu.settle()


@pytest.fixture
async def emu() -> AsyncIterator[AnthropicEmulator]:
    async with serve_anthropic(stepped_config()) as running:
        yield running
