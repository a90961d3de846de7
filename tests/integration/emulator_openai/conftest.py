from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from batchd.emulator.openai import OpenAIEmulator, serve_openai
from tests.integration.emulator_openai.helpers import Api, stepped_config


@pytest.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    """An OpenAI emulator whose time moves only when the test advances it."""
    async with serve_openai(stepped_config()) as running:
        yield running


@pytest.fixture
async def api(emu: OpenAIEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emu)
