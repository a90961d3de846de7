"""A thin client for the emulator tests: raw HTTP over aiohttp, nothing hidden."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from batchd.emulator import Emulator, EmulatorConfig, ProcessingModel

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TERMINAL = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}

# Time only moves when a test says so (speed 1, no jitter): every step is explicit.
STEPPED = ProcessingModel(
    queue_s=10, request_s=10, parallelism=1, min_run_s=0, finalize_s=5, cancel_s=5, jitter=0
)


def stepped_config(**changes: Any) -> EmulatorConfig:
    base: dict[str, Any] = {"api_keys": (KEY,), "speed": 1.0, "seed": 7, "processing": STEPPED}
    return EmulatorConfig(**{**base, **changes})


def fast_config(**changes: Any) -> EmulatorConfig:
    processing = ProcessingModel(
        queue_s=1, request_s=1, parallelism=10, min_run_s=1, finalize_s=1, cancel_s=1, jitter=0
    )
    base: dict[str, Any] = {
        "api_keys": (KEY,),
        "speed": 2000.0,
        "seed": 7,
        "processing": processing,
    }
    return EmulatorConfig(**{**base, **changes})


def chat_line(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "body": {"messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: Iterable[Mapping[str, Any] | str]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def chat_file(n: int, **body: Any) -> bytes:
    return jsonl(chat_line(str(i), f"question number {i}", **body) for i in range(n))


@dataclass
class Api:
    session: aiohttp.ClientSession
    emu: Emulator

    @property
    def url(self) -> str:
        return self.emu.url

    async def call(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(
            method, self.url + path, headers=AUTH if headers is None else headers, **kw
        ) as resp:
            raw = await resp.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw
            return resp.status, body, resp

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body, _ = await self.call(method, path, **kw)
        assert status == 200, (status, body)
        return body

    async def upload(
        self,
        content: bytes,
        filename: str = "in.jsonl",
        purpose: str | None = "batch",
        **fields: str,
    ) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("visibility", fields.pop("visibility", "workspace"))
        if purpose is not None:
            form.add_field("purpose", purpose)
        for name, value in fields.items():
            form.add_field(name, value)
        form.add_field("file", content, filename=filename, content_type="application/octet-stream")
        result: dict[str, Any] = await self.ok("POST", "/v1/files", data=form)
        return result

    async def create(self, **body: Any) -> dict[str, Any]:
        payload = {"endpoint": "/v1/chat/completions", "model": "m", "timeout_hours": 24, **body}
        result: dict[str, Any] = await self.ok("POST", "/v1/batch/jobs", json=payload)
        return result

    async def job(self, job_id: str, **params: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("GET", f"/v1/batch/jobs/{job_id}", params=params)
        return result

    async def content(self, file_id: str) -> bytes:
        status, body, resp = await self.call("GET", f"/v1/files/{file_id}/content")
        assert status == 200, (status, body)
        assert resp.headers["Content-Type"] == "application/octet-stream"
        return body if isinstance(body, bytes) else json.dumps(body).encode()

    async def lines(self, file_id: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/v1/files/{file_id}/content", headers=AUTH) as r:
            assert r.status == 200
            return [json.loads(line) for line in (await r.read()).splitlines()]

    async def finish(self, job_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """Advance time in big steps until the job is terminal."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            await self.emu.settle()
            job = await self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            self.emu.advance(60)
        raise AssertionError(f"job {job_id} did not finish")
