"""Real brokers for the queue tests: one ``Harness`` per kind (RabbitMQ, Redis Streams), each on
uniquely named queues or streams that are deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from batchd.queues.amqp import AmqpBroker
from batchd.queues.broker import Broker
from batchd.queues.redis_streams import RedisStreamBroker
from batchd.secret import Secret
from tests.services import AMQP, REDIS


@dataclass(frozen=True)
class Seen:
    """A message as a consumer of a results or dead-letter queue sees it."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    correlation_id: str | None


class Harness(Protocol):
    kind: str
    url: str
    created: list[str]

    def name(self, what: str) -> str: ...
    def broker(
        self, queue: str, *, prefetch: int = 100, declare: tuple[str, ...] = ()
    ) -> Broker: ...
    async def produce(self, queue: str, body: bytes, **headers: str) -> None: ...
    async def drain(self, queue: str) -> list[Seen]: ...
    async def cleanup(self) -> None: ...


@dataclass
class AmqpHarness:
    url: str
    kind: str = "amqp"
    created: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        name = f"batchd-test-{what}-{secrets.token_hex(4)}"
        self.created += [name, f"{name}.dead", f"{name}.results"]
        return name

    def broker(self, queue: str, *, prefetch: int = 100, declare: tuple[str, ...] = ()) -> Broker:
        return AmqpBroker(Secret(self.url), queue, prefetch=prefetch, declare=declare)

    async def produce(self, queue: str, body: bytes, **headers: str) -> None:
        import aio_pika

        message_id = headers.pop("message_id", None)
        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue(queue, durable=True)
            await channel.default_exchange.publish(
                aio_pika.Message(body, headers=dict(headers), message_id=message_id),
                routing_key=queue,
            )

    async def drain(self, queue: str) -> list[Seen]:
        import aio_pika

        seen = []
        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel()
            q = await channel.declare_queue(queue, durable=True)
            while (m := await q.get(fail=False, no_ack=True)) is not None:
                seen.append(Seen(m.body, dict(m.headers), m.message_id, m.correlation_id))
        return seen

    async def cleanup(self) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel()
            for name in self.created:
                await channel.queue_delete(name)


@dataclass
class RedisHarness:
    url: str
    kind: str = "redis"
    created: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        name = f"batchd-test-{what}-{secrets.token_hex(4)}"
        self.created += [name, f"{name}.dead", f"{name}.results"]
        return name

    def broker(self, queue: str, *, prefetch: int = 100, declare: tuple[str, ...] = ()) -> Broker:
        del declare  # streams are made by their first XADD
        return RedisStreamBroker(
            Secret(self.url), queue, group="batchd", consumer="test", prefetch=prefetch
        )

    async def produce(self, queue: str, body: bytes, **headers: str) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            fields: dict[Any, Any] = {"body": body, **headers}
            await client.xadd(queue, fields)
        finally:
            await client.aclose()

    async def drain(self, queue: str) -> list[Seen]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            entries = await client.xrange(queue)
            await client.delete(queue)
        finally:
            await client.aclose()
        seen = []
        for _, fields in entries or []:
            assert fields is not None
            f: dict[str, Any] = {bytes(k).decode(): v for k, v in fields.items()}  # type: ignore[arg-type]
            body = f.pop("body")
            text = {k: bytes(v).decode() for k, v in f.items()}
            seen.append(
                Seen(body, text, text.pop("message_id", None), text.pop("correlation_id", None))
            )
        return seen

    async def cleanup(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            if self.created:
                await client.delete(*self.created)
        finally:
            await client.aclose()


@pytest.fixture(params=["amqp", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    made: Harness = (
        AmqpHarness(AMQP.require()) if request.param == "amqp" else RedisHarness(REDIS.require())
    )
    yield made
    await made.cleanup()
