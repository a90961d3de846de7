"""``batchd emulator --provider openai`` as a real process: it serves OpenAI's surface, with
the shared options (keys, faults), and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import aiohttp

URL_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


async def test_openai_emulator_command_serves_and_stops() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "batchd", "emulator", "--provider", "openai", "--port", "0"),
        *("--api-key", "k1", "--fault", "503:1,route=GET /v1/batches,limit=1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "the emulator exited before listening"
            match = URL_RE.search(line)
            url = match.group(1) if match else None
        auth = {"Authorization": "Bearer k1"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/batches", headers=auth) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["type"] == "server_error"
            async with session.get(f"{url}/v1/batches", headers=auth) as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "object": "list",
                    "data": [],
                    "first_id": None,
                    "last_id": None,
                    "has_more": False,
                }
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
