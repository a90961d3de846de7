"""The official SDK (mistralai 3.7.0), unchanged, drives every Files and Batch jobs operation
against the emulator. If the emulator drifts from the wire protocol the SDK expects (content
types, required fields, int ``bytes``, query encodings), these calls raise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from mistralai.client import Mistral, models
from mistralai.client.errors import SDKError
from mistralai.extra import response_format_from_pydantic_model
from pydantic import BaseModel, Field

from batchd.emulator import Emulator, serve
from tests.integration.emulator.helpers import KEY, chat_file, stepped_config

TERMINAL = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with serve(stepped_config()) as running:
        yield running


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[Mistral]:
    async with Mistral(api_key=KEY, server_url=emu.url + "/") as sdk:
        yield sdk


async def _wait(client: Mistral, emu: Emulator, job_id: str) -> models.BatchJob:
    for _ in range(200):
        job = await client.batch.jobs.get_async(job_id=job_id)
        if job.status in TERMINAL:
            return job
        await emu.settle()
        emu.advance(30)
    raise AssertionError("job did not finish")


async def test_files_operations(client: Mistral, emu: Emulator) -> None:
    content = chat_file(3)
    uploaded = await client.files.upload_async(
        file={"file_name": "in.jsonl", "content": content}, purpose="batch", expiry=2
    )
    assert uploaded.size_bytes == len(content) and uploaded.num_lines == 3
    assert uploaded.sample_type == "batch_request" and uploaded.source == "upload"

    listed = await client.files.list_async(
        page=0,
        page_size=5,
        include_total=True,
        sample_type=["batch_request", "batch_result"],
        source=["upload"],
        search="in",
        purpose="batch",
        mimetypes=["application/jsonl"],
    )
    assert [f.id for f in listed.data] == [uploaded.id] and listed.total == 1

    retrieved = await client.files.retrieve_async(file_id=uploaded.id)
    assert retrieved.deleted is False and retrieved.filename == "in.jsonl"

    download = await client.files.download_async(file_id=uploaded.id)
    assert await download.aread() == content
    await download.aclose()

    signed = await client.files.get_signed_url_async(file_id=uploaded.id, expiry=2)
    async with aiohttp.ClientSession() as session, session.get(signed.url) as resp:
        assert resp.status == 200 and await resp.read() == content

    deleted = await client.files.delete_async(file_id=uploaded.id)
    assert deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(SDKError) as info:
        await client.files.retrieve_async(file_id=uploaded.id)
    assert info.value.status_code == 404


async def test_batch_job_operations(client: Mistral, emu: Emulator) -> None:
    uploaded = await client.files.upload_async(
        file={"file_name": "in.jsonl", "content": chat_file(5)}, purpose="batch"
    )
    job = await client.batch.jobs.create_async(
        endpoint="/v1/chat/completions",
        input_files=[uploaded.id],
        model="m",
        metadata={"batchd_job": "j1"},
        timeout_hours=48,
    )
    assert job.status == "QUEUED" and job.total_requests == 0 and job.errors == []

    since = datetime.fromtimestamp(emu.now(), UTC) - timedelta(minutes=1)
    listed = await client.batch.jobs.list_async(
        page=0,
        page_size=10,
        model="m",
        metadata={"batchd_job": "j1"},
        created_after=since,
        created_by_me=True,
        status=["QUEUED", "RUNNING"],
        order_by="created",
    )
    assert [j.id for j in listed.data or []] == [job.id] and listed.total == 1
    none = await client.batch.jobs.list_async(metadata={"batchd_job": "other"}, agent_id="ag")
    assert none.total == 0 and none.data == []

    done = await _wait(client, emu, job.id)
    assert done.status == "SUCCESS" and done.succeeded_requests == 5
    assert isinstance(done.output_file, str)
    result = await client.files.download_async(file_id=done.output_file)
    lines = [json.loads(x) for x in (await result.aread()).splitlines()]
    await result.aclose()
    assert sorted(x["custom_id"] for x in lines) == ["0", "1", "2", "3", "4"]

    deleted = await client.batch.jobs.delete_async(job_id=job.id)
    assert deleted.deleted is True and deleted.object == "batch"


async def test_inline_job_cancel_and_errors(client: Mistral, emu: Emulator) -> None:
    requests = [
        models.BatchRequest(custom_id="a", body={"messages": [{"role": "user", "content": "hi"}]})
    ]
    job = await client.batch.jobs.create_async(
        endpoint="/v1/chat/completions", requests=requests, model="m"
    )
    cancelled = await client.batch.jobs.cancel_async(job_id=job.id)
    assert cancelled.status == "CANCELLATION_REQUESTED"
    assert (await _wait(client, emu, job.id)).status == "CANCELLED"

    other = await client.batch.jobs.create_async(
        endpoint="/v1/chat/completions", requests=requests, model="m"
    )
    done = await _wait(client, emu, other.id)
    with_outputs = await client.batch.jobs.get_async(job_id=other.id, inline=True)
    assert done.status == "SUCCESS"
    assert isinstance(with_outputs.outputs, list)
    assert with_outputs.outputs[0]["response"]["body"]["choices"][0]["message"]["content"]

    with pytest.raises(SDKError) as info:
        await client.batch.jobs.create_async(
            endpoint="/v1/chat/completions", requests=requests, timeout_hours=500
        )
    assert info.value.status_code == 422 and "timeout_hours" in info.value.body

    async with Mistral(api_key="wrong", server_url=emu.url) as intruder:
        with pytest.raises(SDKError) as info:
            await intruder.batch.jobs.list_async()
    assert info.value.status_code == 401


async def test_mistrals_inline_example_with_another_model_in_the_bodies(
    client: Mistral, emu: Emulator
) -> None:
    """client-python ``examples/mistral/jobs/async_batch_job_chat_completion_inline.py``: the
    job names mistral-small-latest, every body mistral-medium-latest; the real API answers
    every request (the job's model), so the emulator must too."""
    requests = [
        models.BatchRequest(
            custom_id=str(i),
            body={
                "model": "mistral-medium-latest",
                "messages": [models.UserMessage(content=f"What's i + {i}")],
            },
        )
        for i in range(5)
    ]
    job = await client.batch.jobs.create_async(
        requests=requests,
        model="mistral-small-latest",
        endpoint="/v1/chat/completions",
        metadata={"job_type": "testing"},
    )
    done = await _wait(client, emu, job.id)
    assert (done.status, done.succeeded_requests, done.failed_requests) == ("SUCCESS", 5, 0)
    assert isinstance(done.outputs, list) and len(done.outputs) == 5
    bodies = [res["response"]["body"] for res in done.outputs]
    assert {b["model"] for b in bodies} == {"mistral-small-latest"}


class Table(BaseModel):
    name: str = Field(description="The name or title of the table")


class TableExtraction(BaseModel):
    tables: list[Table] = Field(description="List of tables found in the document")


async def test_mistrals_ocr_annotation_example(client: Mistral, emu: Emulator) -> None:
    """client-python ``examples/mistral/jobs/async_jobs_ocr_batch_annotation.py``: eight pages
    asked for, an annotation in a pydantic model's format, read back through a signed URL."""
    line = {
        "custom_id": "0",
        "body": {
            "document": {
                "type": "document_url",
                "document_url": "https://arxiv.org/pdf/2401.04088",
            },
            "document_annotation_format": response_format_from_pydantic_model(TableExtraction),
            "pages": [0, 1, 2, 3, 4, 5, 6, 7],
            "include_image_base64": False,
        },
    }
    batch_file = await client.files.upload_async(
        file=models.File(file_name="ocr_batch.jsonl", content=json.dumps(line).encode()),
        purpose="batch",
    )
    created = await client.batch.jobs.create_async(
        model="mistral-ocr-latest", input_files=[batch_file.id], endpoint="/v1/ocr"
    )
    job = await _wait(client, emu, created.id)
    assert job.status == "SUCCESS" and isinstance(job.output_file, str)
    signed = await client.files.get_signed_url_async(file_id=job.output_file)
    async with aiohttp.ClientSession() as session, session.get(signed.url) as resp:
        (raw,) = (await resp.read()).decode().strip().split("\n")
    body = json.loads(raw)["response"]["body"]
    ocr = models.OCRResponse.model_validate(body)
    assert [p.index for p in ocr.pages] == list(range(8))
    assert ocr.usage_info.pages_processed == 8
    assert isinstance(ocr.document_annotation, str)
    tables = TableExtraction.model_validate_json(ocr.document_annotation)
    assert [t.name for t in tables.tables]
