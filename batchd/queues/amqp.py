"""RabbitMQ (AMQP 0-9-1) through aio-pika: a durable queue consumed with manual acks.

Messages are taken with ``prefetch`` unacknowledged at most (the broker's backpressure: a source
that cannot commit stops receiving, nothing is dropped). Publishing goes through the default
exchange with publisher confirms and ``mandatory``: a message no queue takes is an error, not a
silent loss. The queue, its dead-letter queue and its results queue are declared durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pamqp.commands import Basic

from batchd.queues.broker import KEY_HEADER, BrokerDown, Incoming, Outgoing, scrub
from batchd.secret import Secret


class AmqpBroker:
    def __init__(
        self, url: Secret, queue: str, *, prefetch: int, declare: Sequence[str] = ()
    ) -> None:
        self._url = url
        self._queue = queue
        self._prefetch = prefetch
        self._declare = tuple(declare)  # other queues published to (dead letters, results)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()

    async def connect(self) -> None:
        await self.close()
        self._inbox = asyncio.Queue()
        try:
            self._connection = await aio_pika.connect(self._url.reveal(), timeout=10)
            self._connection.close_callbacks.add(self._lost)
            channel = await self._connection.channel(publisher_confirms=True)
            self._channel = channel
            await channel.set_qos(prefetch_count=self._prefetch)
            for name in self._declare:
                await channel.declare_queue(name, durable=True)
            queue = await channel.declare_queue(self._queue, durable=True)
            await queue.consume(self._inbox.put, no_ack=False)
        except Exception as exc:
            await self.close()
            raise BrokerDown(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None

    async def probe(self) -> None:
        """Connect and open a channel, declaring and consuming nothing (``batchd check``)."""
        try:
            async with await aio_pika.connect(self._url.reveal(), timeout=10) as connection:
                await connection.channel()
        except Exception as exc:
            raise BrokerDown(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None

    def _lost(self, *_: Any) -> None:
        self._inbox.put_nowait(None)  # wakes a waiting receive

    async def receive(self, limit: int, timeout_s: float) -> list[Incoming]:
        self._check()
        out: list[Incoming] = []
        if self._inbox.empty():
            if timeout_s <= 0:
                return out
            try:
                first = await asyncio.wait_for(self._inbox.get(), timeout_s)
            except TimeoutError:
                return out
        else:
            first = self._inbox.get_nowait()
        pending = [first]
        while len(pending) < limit and not self._inbox.empty():
            pending.append(self._inbox.get_nowait())
        for message in pending:
            if message is None:
                self._check()
                continue
            out.append(_incoming(message))
        return out

    async def ack(self, messages: Sequence[Incoming]) -> None:
        self._check()
        try:
            for message in messages:
                await message.tag.ack()
        except Exception as exc:
            raise BrokerDown(scrub(f"ack failed: {type(exc).__name__}: {exc}", self._url)) from None

    async def publish(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        self._check()
        assert self._channel is not None
        exchange = self._channel.default_exchange
        try:
            answers = await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            m.body,
                            message_id=m.message_id,
                            correlation_id=m.correlation_id,
                            headers=dict(m.headers),
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=m.to,
                        mandatory=True,
                    )
                    for m in messages
                )
            )
        except Exception as exc:
            raise BrokerDown(
                scrub(f"publish failed: {type(exc).__name__}: {exc}", self._url)
            ) from None
        # returned (no queue of that name) or nacked: not published
        return [m for m, a in zip(messages, answers, strict=True) if not _confirmed(a)]

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            connection.close_callbacks.discard(self._lost)
            with contextlib.suppress(Exception):
                await connection.close()

    def _check(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise BrokerDown("the connection to RabbitMQ is closed")


def _confirmed(answer: object) -> bool:
    return isinstance(answer, Basic.Ack)


def _incoming(message: AbstractIncomingMessage) -> Incoming:
    headers = dict(message.headers or {})
    key = _text(headers.get(KEY_HEADER)) or message.message_id
    return Incoming(message.body, headers, key, message, bool(message.redelivered))


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
