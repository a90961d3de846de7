"""The official SDK (anthropic 2.17.0), unchanged except for ``base_url``, with strict response
validation and no retries, runs every Message Batches operation against the emulator. If the
emulator drifts from what the SDK expects (required fields, RFC 3339 times, the paging
envelope, the nested errored result), these calls raise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import pytest
from anthropic.types.messages import (
    MessageBatchCanceledResult,
    MessageBatchErroredResult,
    MessageBatchSucceededResult,
)

from batchd.emulator.anthropic import AnthropicEmulator
from tests.integration.emulator_anthropic.conftest import KEY, ended, request


@pytest.fixture
async def client(emu: AnthropicEmulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.url, max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


async def test_create_retrieve_results_delete(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    bad = {"custom_id": "bad", "params": {"model": "m", "max_tokens": 0, "messages": []}}
    created = await client.messages.batches.create(
        requests=[request("a", "one two"), request("b", max_tokens=3), bad]  # type: ignore[list-item]
    )
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 3 and created.request_counts.succeeded == 0
    assert created.id.startswith("msgbatch_") and created.expires_at > created.created_at

    await ended(emu)
    batch = await client.messages.batches.retrieve(created.id)
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert batch.results_url == f"{emu.url}/v1/messages/batches/{created.id}/results"
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (2, 1, 0)

    results = {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}
    assert set(results) == {"a", "b", "bad"}
    first, second, errored = results["a"], results["b"], results["bad"]
    assert isinstance(first, MessageBatchSucceededResult)
    assert first.message.model == "claude-test" and first.message.usage.output_tokens >= 1
    assert isinstance(second, MessageBatchSucceededResult)
    assert second.message.stop_reason == "max_tokens" and second.message.usage.output_tokens == 3
    assert isinstance(errored, MessageBatchErroredResult)
    assert errored.error.error.type == "invalid_request_error"

    deleted = await client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError) as info:
        await client.messages.batches.retrieve(batch.id)
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")


async def test_list_pages_with_both_cursors(client: anthropic.AsyncAnthropic) -> None:
    ids = [
        (await client.messages.batches.create(requests=[request(f"r{i}")])).id  # type: ignore[list-item]
        for i in range(5)
    ]
    newest_first = ids[::-1]
    page = await client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    assert [b.id async for b in await client.messages.batches.list(limit=2)] == newest_first

    older = await client.messages.batches.list(after_id=ids[3], limit=10)
    assert [b.id for b in older.data] == newest_first[2:] and not older.has_more
    newer = await client.messages.batches.list(before_id=ids[1], limit=2)
    assert [b.id for b in newer.data] == [ids[3], ids[2]] and newer.has_more
    assert (newer.first_id, newer.last_id) == (ids[3], ids[2])


async def test_cancel_then_canceled_results(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    created = await client.messages.batches.create(
        requests=[request(f"r{i}") for i in range(4)]  # type: ignore[misc]
    )
    emu.advance(25)  # queue 10 s, then one request per 10 s: r0 is done
    canceling = await client.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None

    with pytest.raises(anthropic.BadRequestError):  # in progress: cancel first, then delete
        await client.messages.batches.delete(created.id)
    await ended(emu, 5)
    batch = await client.messages.batches.retrieve(created.id)
    assert batch.processing_status == "ended"
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (1, 3)
    kinds = [type(r.result) async for r in await client.messages.batches.results(created.id)]
    assert sorted(k.__name__ for k in kinds) == sorted(
        [MessageBatchSucceededResult.__name__] + [MessageBatchCanceledResult.__name__] * 3
    )


async def test_a_wrong_key_is_an_authentication_error(emu: AnthropicEmulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key="wrong", base_url=emu.url, max_retries=0, _strict_response_validation=True
    ) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await sdk.messages.batches.list()
    assert info.value.type == "authentication_error"
    assert info.value.request_id is not None
