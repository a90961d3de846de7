"""The provider contract suite's fixtures: one ``Contract`` per implementation (like the store
suite's ``store``). Each gives the provider under test and a way to end one of its jobs; every
provider batchd supports joins ``IMPLEMENTATIONS`` with its own ``Contract``.

- ``fake``: the in-memory ``FakeProvider`` the unit tests drive the loops with; the suite keeps
  it honest.
- ``mistral-on-emulator``: ``MistralProvider`` over loopback HTTP to the emulator, whose time
  moves only when a contract asks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import pytest

from batchd.emulator import Emulator, serve
from batchd.models import TERMINAL
from batchd.providers.base import BatchProvider, JobSnapshot
from batchd.providers.mistral import MistralProvider
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
        data = self.provider.files[job.spec.input_files[0]][1]
        failing = {
            obj["custom_id"]
            for obj in map(json.loads, data.splitlines())
            if not isinstance(obj["body"].get("messages"), list)
        }
        self.provider.finish(job_id, failing=failing)
        return await self.provider.get_job(job_id)


@dataclass
class EmulatorContract:
    provider: MistralProvider
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


IMPLEMENTATIONS = ["fake", "mistral-on-emulator"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def contract(request: pytest.FixtureRequest) -> AsyncIterator[Contract]:
    if request.param == "fake":
        yield FakeContract(FakeProvider())
        return
    async with aiohttp.ClientSession() as session, serve(emulator_config()) as emulator:
        yield EmulatorContract(MistralProvider(fast_settings(emulator.url), session), emulator)
