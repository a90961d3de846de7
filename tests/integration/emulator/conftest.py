from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from batchd.emulator import serve
from tests.integration.emulator.helpers import Api, stepped_config


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api(session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    """An emulator whose time moves only when the test advances it."""
    async with serve(stepped_config()) as emu:
        yield Api(session, emu)
