"""``batchd emulator`` as a real process: startup line, serving, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys

import aiohttp

URL_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


async def _read_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, f"the emulator exited before listening: {seen}"
        seen.append(line)
        match = URL_RE.search(line)
        if match:
            return match.group(1)


async def test_emulator_command_serves_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batchd",
        "emulator",
        "--port",
        "0",
        "--speed",
        "100",
        "--api-key",
        "k1",
        "--seed",
        "3",
        "--fault",
        "503:1,route=GET /v1/files,limit=1",
        "--processing",
        "queue_s=1",
        "--behaviour",
        "error_field=string",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = await _read_url(proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_emulator/health") as resp:
                assert (await resp.json())["speed"] == 100
            auth = {"Authorization": "Bearer k1"}
            async with session.get(f"{url}/v1/files", headers=auth) as resp:
                assert resp.status == 503
            async with session.get(f"{url}/v1/files", headers=auth) as resp:
                assert resp.status == 200
            async with session.get(f"{url}/v1/files", headers={"Authorization": "Bearer x"}) as r:
                assert r.status == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_emulator_command_port_in_use_is_a_startup_failure() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchd",
            "emulator",
            "--port",
            str(port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert await asyncio.wait_for(proc.wait(), 20) == 3


async def test_emulator_command_usage_errors() -> None:
    for bad in (["--fault", "teapot"], ["--processing", "nope=1"], ["--behaviour", "x"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchd",
            "emulator",
            *bad,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert await asyncio.wait_for(proc.wait(), 20) == 2, bad


async def test_bad_requests_are_one_log_line_each_without_a_traceback() -> None:
    """Issue 13 item 13 with the real process: aiohttp's own 400 (a broken header) and refused
    requests (a body nested too deeply, a malformed upload) each log one line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batchd",
        "emulator",
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = await _read_url(proc)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/files HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        assert b" 400 " in (await reader.read()).split(b"\r\n", 1)[0]
        writer.close()
        auth = {"Authorization": "Bearer k"}
        async with aiohttp.ClientSession() as session:
            deep = b"[" * 100_000 + b"]" * 100_000
            async with session.post(f"{url}/v1/batch/jobs", data=deep, headers=auth) as resp:
                assert resp.status == 422
            multipart = {**auth, "Content-Type": "multipart/form-data; boundary=x"}
            async with session.post(
                f"{url}/v1/files", data=b"--x\r\nbad\r\n\r\n", headers=multipart
            ) as r:
                assert r.status == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert proc.stdout is not None
    output = (await proc.stdout.read()).decode()
    assert "Traceback" not in output and "Error handling request" not in output
    assert output.count("emulator.bad_http") == 1
    assert output.count("emulator.request_refused") == 2
