"""The ``Broker`` behaviour on real RabbitMQ and Redis: receive, ack, redelivery, publish."""

from __future__ import annotations

import pytest

from batchd.queues.amqp import AmqpBroker
from batchd.queues.broker import Broker, BrokerDown, Incoming, Outgoing
from batchd.queues.redis_streams import RedisStreamBroker
from batchd.secret import Secret
from tests.services import AMQP

from .conftest import AmqpHarness, Harness


async def test_messages_are_received_with_their_headers_and_key(harness: Harness) -> None:
    queue = harness.name("recv")
    broker = harness.broker(queue)
    await broker.connect()
    try:
        await harness.produce(queue, b'{"a": 1}', **{"idempotency-key": "k-1"})
        await harness.produce(queue, b'{"a": 2}', **{"batchd-name": "x.jsonl"})
        got = await broker.receive(10, timeout_s=5)
        while len(got) < 2:
            got += await broker.receive(10, timeout_s=5)
        assert [m.body for m in got] == [b'{"a": 1}', b'{"a": 2}']
        assert got[0].key == "k-1"
        assert got[1].headers["batchd-name"] == "x.jsonl"
        if harness.kind == "redis":  # the entry id (AMQP: None without a message_id)
            assert got[1].key
        await broker.ack(got)
        assert await broker.receive(10, timeout_s=0.3) == []
    finally:
        await broker.close()


async def test_what_was_not_acked_comes_back_after_a_reconnect(harness: Harness) -> None:
    queue = harness.name("redeliver")
    broker = harness.broker(queue)
    await broker.connect()
    try:
        await harness.produce(queue, b"one")
        await harness.produce(queue, b"two")
        first = await _receive(broker, 2)
        await broker.ack(first[:1])
        await broker.close()  # "two" was held, not acknowledged
        await broker.connect()
        again = await _receive(broker, 1)
        assert [m.body for m in again] == [b"two"]
        assert again[0].redelivered
        await broker.ack(again)
    finally:
        await broker.close()


async def test_prefetch_bounds_what_is_held_unacknowledged(harness: Harness) -> None:
    queue = harness.name("prefetch")
    broker = harness.broker(queue, prefetch=3)
    await broker.connect()
    try:
        for i in range(5):
            await harness.produce(queue, str(i).encode())
        held = await _receive(broker, 3)
        assert len(held) == 3
        if harness.kind == "amqp":  # Redis holds entries pending: the source asks for room
            assert await broker.receive(10, timeout_s=0.5) == []
        await broker.ack(held)
        rest = await _receive(broker, 2)
        assert sorted(m.body for m in rest) == [b"3", b"4"]
        await broker.ack(rest)
    finally:
        await broker.close()


async def test_published_messages_carry_their_id_correlation_and_headers(
    harness: Harness,
) -> None:
    queue = harness.name("pub")
    results = f"{queue}.results"
    broker = harness.broker(queue, declare=(results,))
    await broker.connect()
    try:
        await broker.publish(
            [
                Outgoing(results, b'{"r": 1}', "m-1", correlation_id="c-1", headers={"h": "v"}),
                Outgoing(results, b'{"r": 2}', "m-2"),
            ]
        )
        seen = await harness.drain(results)
        assert [(s.body, s.message_id, s.correlation_id) for s in seen] == [
            (b'{"r": 1}', "m-1", "c-1"),
            (b'{"r": 2}', "m-2", None),
        ]
        assert seen[0].headers["h"] == "v"
    finally:
        await broker.close()


async def test_amqp_returns_what_it_could_not_publish_to_a_missing_queue() -> None:
    """(A Redis stream is made by its first XADD.)"""
    harness = AmqpHarness(AMQP.require())
    queue = harness.name("nowhere")
    broker = harness.broker(queue)
    await broker.connect()
    try:
        missing = Outgoing(f"{queue}.missing", b"x", "m-1")
        fine = Outgoing(queue, b"y", "m-2")
        assert await broker.publish([missing, fine]) == [missing]
        assert [m.body for m in await _receive(broker, 1)] == [b"y"]
    finally:
        await broker.close()
        await harness.cleanup()


CANARY = "pw-canary-0b8e4f2a"


@pytest.mark.parametrize("kind", ["amqp", "redis"])
async def test_an_unreachable_broker_is_down_and_the_password_never_shows(kind: str) -> None:
    url = f"{kind}://user:{CANARY}@127.0.0.1:1/"
    broker = (
        AmqpBroker(Secret(url), "q", prefetch=1)
        if kind == "amqp"
        else RedisStreamBroker(Secret(url), "q", group="g", consumer="c", prefetch=1)
    )
    with pytest.raises(BrokerDown) as info:
        await broker.connect()
    assert CANARY not in str(info.value)
    assert CANARY not in repr(info.value.__cause__) and info.value.__suppress_context__


async def _receive(broker: Broker, n: int) -> list[Incoming]:
    got: list[Incoming] = []
    for _ in range(50):
        got += await broker.receive(n - len(got), timeout_s=0.2)
        if len(got) >= n:
            break
    return got
