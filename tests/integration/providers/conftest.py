"""Fixtures: the emulator on loopback and a ``MistralProvider`` pointed at it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import pytest

from batchd.emulator import Emulator, EmulatorConfig, ProcessingModel, serve
from batchd.models import TERMINAL
from batchd.providers.base import JobSnapshot, ProviderSettings
from batchd.providers.mistral import MistralProvider
from batchd.secret import Secret

KEY = "providers-test-key"
# Time moves only when a test advances it (speed 1, no jitter).
STEPPED = ProcessingModel(
    queue_s=10, request_s=1, parallelism=100, min_run_s=0, finalize_s=1, cancel_s=5, jitter=0
)


def emulator_config(**changes: Any) -> EmulatorConfig:
    base: dict[str, Any] = {"api_keys": (KEY,), "speed": 1.0, "seed": 11, "processing": STEPPED}
    return EmulatorConfig(**{**base, **changes})


def fast_settings(url: str, **changes: Any) -> ProviderSettings:
    """Settings for tests: no client-side rate limit, millisecond backoff."""
    base: dict[str, Any] = {
        "name": "emu",
        "base_url": url,
        "api_key": Secret(KEY),
        "requests_per_second": 0,
        "timeout_s": 10.0,
        "retry_base_s": 0.001,
        "retry_max_s": 0.01,
        "retry_after_max_s": 0.01,
        "read_retries": 8,
    }
    return ProviderSettings(**{**base, **changes})


def chat_lines(n: int, prefix: str = "q") -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "body": {
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 4,
                },
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def bad_lines(ids: Iterable[str]) -> bytes:
    """Requests the emulator refuses per request (an error line each)."""
    return b"".join(
        json.dumps({"custom_id": i, "body": {"messages": "not a list"}}).encode() + b"\n"
        for i in ids
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with serve(emulator_config()) as emu:
        yield emu


@pytest.fixture
def provider(emulator: Emulator, session: aiohttp.ClientSession) -> MistralProvider:
    return MistralProvider(fast_settings(emulator.url), session)


async def finish(
    provider: MistralProvider, emulator: Emulator, job_id: str, *, step_s: float = 60.0
) -> JobSnapshot:
    """Advance emulated time until the job is terminal."""
    for _ in range(200):
        await emulator.settle()
        snap = await provider.get_job(job_id)
        if snap.state in TERMINAL:
            return snap
        emulator.advance(step_s)
        await asyncio.sleep(0)
    raise AssertionError(f"job {job_id} did not finish")
