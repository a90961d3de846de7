"""The provider contract suite's fixtures: one ``Contract`` per implementation (like the store
suite's ``store``). Each gives the provider under test and a way to end one of its jobs; every
provider batchd supports joins ``IMPLEMENTATIONS`` with its own ``Contract``.

- ``fake``, ``fake-encoded``, ``fake-inline``: the in-memory ``FakeProvider`` the unit tests
  drive the loops with, staging by file (the chunk as it is, or encoded in another line format)
  and inline (with ids of its own); the suite keeps it honest and exercises both staging kinds.
- ``mistral-on-emulator``: ``MistralProvider`` over loopback HTTP to the emulator, whose time
  moves only when a contract asks.
- ``openai-on-emulator``: ``OpenAIProvider`` over loopback HTTP to the OpenAI emulator
  (``batchd emulator --provider openai``), the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import pytest

from batchd.emulator import Emulator, serve
from batchd.emulator.anthropic import AnthropicEmulator, serve_anthropic
from batchd.emulator.openai import serve_openai
from batchd.models import TERMINAL
from batchd.providers.anthropic import AnthropicProvider
from batchd.providers.base import BatchProvider, JobSnapshot
from batchd.providers.mistral import MistralProvider
from batchd.providers.openai import OpenAIProvider
from tests.integration.providers.conftest import emulator_config, fast_settings
from tests.unit.fakes import FakeProvider


class Contract(Protocol):
    @property
    def provider(self) -> BatchProvider: ...

    async def finish(self, job_id: str) -> JobSnapshot:
        """End the job the way the provider would: requests whose body is not valid fail,
        the others succeed. Returns the terminal snapshot."""
        ...


@dataclass
class FakeContract:
    provider: FakeProvider

    async def finish(self, job_id: str) -> JobSnapshot:
        job = self.provider.jobs[job_id]
        failing = {
            custom_id
            for custom_id, body in zip(job.custom_ids, job.bodies, strict=True)
            if not isinstance(body.get("messages"), list)
        }
        self.provider.finish(job_id, failing=failing)
        return await self.provider.get_job(job_id)


@dataclass
class EmulatorContract:
    provider: MistralProvider | OpenAIProvider
    emulator: Emulator

    async def finish(self, job_id: str) -> JobSnapshot:
        for _ in range(200):
            await self.emulator.settle()
            snap = await self.provider.get_job(job_id)
            if snap.state in TERMINAL:
                return snap
            self.emulator.advance(60.0)
            await asyncio.sleep(0)
        raise AssertionError(f"job {job_id} did not finish")


@dataclass
class AnthropicContract:
    provider: AnthropicProvider
    emulator: AnthropicEmulator

    async def finish(self, job_id: str) -> JobSnapshot:
        for _ in range(200):
            await self.emulator.settle()
            snap = await self.provider.get_job(job_id)
            if snap.state in TERMINAL:
                return snap
            self.emulator.advance(60.0)
            await asyncio.sleep(0)
        raise AssertionError(f"batch {job_id} did not finish")


FAKES: dict[str, Callable[[], FakeProvider]] = {
    "fake": FakeProvider,
    "fake-encoded": lambda: FakeProvider(encode=True),
    "fake-inline": lambda: FakeProvider(staging="inline"),
}
IMPLEMENTATIONS = [*FAKES, "mistral-on-emulator", "anthropic-on-emulator", "openai-on-emulator"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def contract(request: pytest.FixtureRequest) -> AsyncIterator[Contract]:
    if request.param in FAKES:
        yield FakeContract(FAKES[request.param]())
        return
    if request.param == "anthropic-on-emulator":
        async with aiohttp.ClientSession() as session, serve_anthropic(emulator_config()) as emu:
            provider = AnthropicProvider(fast_settings(emu.url), session)
            yield AnthropicContract(provider, emu)
        return
    if request.param == "openai-on-emulator":
        async with aiohttp.ClientSession() as session, serve_openai(emulator_config()) as emu:
            openai = OpenAIProvider(fast_settings(emu.url + "/v1"), session)
            yield EmulatorContract(openai, emu)
        return
    async with aiohttp.ClientSession() as session, serve(emulator_config()) as emulator:
        yield EmulatorContract(MistralProvider(fast_settings(emulator.url), session), emulator)
