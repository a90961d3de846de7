"""Helpers for the OpenAI emulator tests: configs whose time moves only when told, input lines,
and a raw HTTP client (nothing hidden)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from batchd.emulator import EmulatorConfig, ProcessingModel
from batchd.emulator.openai import OpenAIEmulator

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
ENDED = {"completed", "failed", "expired", "cancelled"}

# speed 1, no jitter: validating 10 s, then 10 s per request (one at a time), finalizing 5 s.
STEPPED = ProcessingModel(
    queue_s=10, request_s=10, parallelism=1, min_run_s=0, finalize_s=5, cancel_s=5, jitter=0
)


def stepped_config(**changes: Any) -> EmulatorConfig:
    base: dict[str, Any] = {"api_keys": (KEY,), "speed": 1.0, "seed": 7, "processing": STEPPED}
    return EmulatorConfig(**{**base, **changes})


def chat_line(custom_id: str, text: str, model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: Iterable[Mapping[str, Any] | str]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def chat_file(n: int, **body: Any) -> bytes:
    return jsonl(chat_line(f"r{i}", f"question number {i}", **body) for i in range(n))


@dataclass
class Api:
    session: aiohttp.ClientSession
    emu: OpenAIEmulator

    async def call(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(
            method, self.emu.url + path, headers=AUTH if headers is None else headers, **kw
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

    async def upload(self, content: bytes, name: str = "in.jsonl", purpose: str = "batch") -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", content, filename=name, content_type="application/jsonl")
        return str((await self.ok("POST", "/v1/files", data=form))["id"])

    async def create(self, content: bytes, **extra: Any) -> dict[str, Any]:
        file_id = await self.upload(content)
        body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **extra}
        batch: dict[str, Any] = await self.ok("POST", "/v1/batches", json=body)
        return batch

    async def batch(self, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = await self.ok("GET", f"/v1/batches/{batch_id}")
        return batch

    async def finish(self, batch_id: str, step_s: float = 30) -> dict[str, Any]:
        for _ in range(500):
            await self.emu.settle()
            batch = await self.batch(batch_id)
            if batch["status"] in ENDED:
                return batch
            self.emu.advance(step_s)
        raise AssertionError(f"batch {batch_id} did not end")

    async def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        url = f"{self.emu.url}/v1/files/{file_id}/content"
        async with self.session.get(url, headers=AUTH) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
