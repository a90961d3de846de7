"""The official ``openai`` SDK (3.60.0), unchanged except for ``base_url``, with strict response
validation on and retries off, runs every Files and Batch operation against the emulator. A
missing required field, a status outside the SDK's Literal, a wrong type or a broken cursor page
raises ``APIResponseValidationError`` (or loops) here."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Batch

from batchd.emulator.openai import OpenAIEmulator
from tests.integration.emulator_openai.helpers import ENDED, KEY, chat_file, jsonl

CHAT: Final = "/v1/chat/completions"
BOGUS: Any = "/v1/bogus"


@pytest.fixture
async def client(emu: OpenAIEmulator) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(
        api_key=KEY, base_url=emu.url + "/v1", max_retries=0, _strict_response_validation=True
    )
    async with sdk:
        yield sdk


async def _upload(client: AsyncOpenAI, content: bytes, name: str = "in.jsonl") -> str:
    uploaded = await client.files.create(file=(name, io.BytesIO(content)), purpose="batch")
    return uploaded.id


async def _finish(client: AsyncOpenAI, emu: OpenAIEmulator, batch_id: str) -> Batch:
    for _ in range(300):
        await emu.settle()
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ENDED:
            return batch
        emu.advance(30)
    raise AssertionError("the batch did not end")


async def test_files_operations(client: AsyncOpenAI) -> None:
    content = chat_file(3)
    uploaded = await client.files.create(
        file=("in.jsonl", io.BytesIO(content)),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert (uploaded.object, uploaded.purpose, uploaded.status) == ("file", "batch", "processed")
    assert uploaded.bytes == len(content)
    assert uploaded.filename == "in.jsonl"
    assert uploaded.expires_at == uploaded.created_at + 7200

    assert await client.files.retrieve(uploaded.id) == uploaded
    assert (await client.files.content(uploaded.id)).read() == content
    async with client.files.with_streaming_response.content(uploaded.id) as streamed:
        assert b"".join([chunk async for chunk in streamed.iter_bytes()]) == content

    deleted = await client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(uploaded.id)


async def test_files_list_pages_by_cursor(client: AsyncOpenAI) -> None:
    ids = [await _upload(client, chat_file(1), f"f{i}.jsonl") for i in range(5)]
    first = await client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.has_more is True
    walked = [f.id async for f in await client.files.list(limit=2)]
    assert walked == ids[::-1]
    oldest_first = [f.id async for f in await client.files.list(limit=2, order="asc")]
    assert oldest_first == ids
    assert [f.id async for f in await client.files.list(purpose="batch_output")] == []


async def test_batch_lifecycle_with_results(client: AsyncOpenAI, emu: OpenAIEmulator) -> None:
    lines = [json.loads(line) for line in chat_file(3, max_tokens=4).splitlines()]
    lines.append({**lines[0], "custom_id": "bad", "body": {"model": "gpt-4o-mini"}})
    file_id = await _upload(client, jsonl(lines))
    created = await client.batches.create(
        input_file_id=file_id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"batchd_job": "j-1"},
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.status == "validating"
    assert created._request_id is not None and created._request_id.startswith("req_")
    assert created.metadata == {"batchd_job": "j-1"}
    assert created.expires_at == created.created_at + 86_400

    ended = await _finish(client, emu, created.id)
    assert ended.status == "completed"
    assert ended.request_counts is not None
    assert ended.request_counts.model_dump() == {"total": 4, "completed": 3, "failed": 1}
    assert ended.usage is not None and ended.usage.output_tokens == 12
    assert ended.output_file_id and ended.error_file_id
    output = await client.files.retrieve(ended.output_file_id)
    assert output.purpose == "batch_output"
    assert output.expires_at == output.created_at + 3600

    results = [
        json.loads(x)
        for x in (await client.files.content(ended.output_file_id)).text.split("\n")
        if x
    ]
    assert sorted(r["custom_id"] for r in results) == ["r0", "r1", "r2"]
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in results)
    errors = [
        json.loads(x)
        for x in (await client.files.content(ended.error_file_id)).text.split("\n")
        if x
    ]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("bad", 400)]


async def test_batches_list_and_cancel(client: AsyncOpenAI, emu: OpenAIEmulator) -> None:
    file_id = await _upload(client, chat_file(50))
    ids = [
        (
            await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
        ).id
        for _ in range(5)
    ]
    page = await client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert [b.id async for b in await client.batches.list(limit=2)] == ids[::-1]

    emu.advance(15)  # validated, running
    cancelling = await client.batches.cancel(ids[0])
    assert cancelling.status == "cancelling"
    assert (await client.batches.cancel(ids[0])).status == "cancelling"  # again: as it is
    ended = await _finish(client, emu, ids[0])
    assert ended.status == "cancelled"
    assert ended.cancelled_at is not None and ended.cancelling_at is not None


async def test_sdk_errors(client: AsyncOpenAI, emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_nope")
    file_id = await _upload(client, chat_file(1))
    with pytest.raises(openai.BadRequestError) as bad:
        await client.batches.create(
            input_file_id=file_id,
            endpoint=BOGUS,  # not in the SDK's Literal, which is not enforced at run time
            completion_window="24h",
        )
    assert bad.value.param == "endpoint"
    done = await _finish(
        client,
        emu,
        (
            await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
        ).id,
    )
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(done.id)
    async with AsyncOpenAI(api_key="wrong", base_url=emu.url + "/v1", max_retries=0) as other:
        with pytest.raises(openai.AuthenticationError) as refused:
            await other.batches.list()
    assert refused.value.code == "invalid_api_key"
    assert "wrong" not in str(refused.value.body)
