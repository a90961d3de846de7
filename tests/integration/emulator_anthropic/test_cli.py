"""``batchd emulator --provider anthropic`` as a real process: it serves the Message Batches
API with the shared options (keys, speed, faults) and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp

from tests.integration.emulator.test_cli import _read_url


async def test_emulator_command_serves_anthropic() -> None:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "batchd", "emulator", "--provider", "anthropic"],
        *["--port", "0", "--speed", "100", "--api-key", "k1", "--seed", "3"],
        *["--fault", "503:1,route=GET /v1/messages/batches,limit=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = await _read_url(proc)
        headers = {"x-api-key": "k1", "anthropic-version": "2023-06-01"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_emulator/health") as resp:
                health = await resp.json()
                assert health["provider"] == "anthropic" and health["speed"] == 100
            async with session.get(f"{url}/v1/messages/batches", headers=headers) as resp:
                assert resp.status == 503
            async with session.get(f"{url}/v1/messages/batches", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["data"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
