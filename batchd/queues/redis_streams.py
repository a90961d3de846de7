"""Redis Streams through redis-py's asyncio client: a consumer group read with ``XREADGROUP``.

An entry carries the message in its ``body`` field; its other fields are the headers
(``batchd-name``, ``batchd-route``, ``idempotency-key``). An entry read and not yet acknowledged
(``XACK``) stays in the group's pending list: after a reconnect or a restart this consumer (named
after the instance and the source, so a restart is the same consumer) reads its own pending
entries first, then new ones. Publishing is ``XADD`` with the message's fields.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from batchd.queues.broker import KEY_HEADER, BrokerDown, Incoming, Outgoing, scrub
from batchd.secret import Secret

BODY_FIELD = "body"
MAX_BLOCK_S = 10.0  # one XREADGROUP waits at most this long (the socket timeout is longer)


class RedisStreamBroker:
    def __init__(
        self, url: Secret, stream: str, *, group: str, consumer: str, prefetch: int
    ) -> None:
        self._url = url
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._prefetch = prefetch
        self._client: aioredis.Redis | None = None
        self._cursor: str = "0"  # "0"...: our own pending entries first; then ">": new ones

    async def connect(self) -> None:
        await self.close()
        self._cursor = "0"
        client = aioredis.Redis.from_url(
            self._url.reveal(), socket_connect_timeout=10, socket_timeout=MAX_BLOCK_S + 20
        )
        try:
            try:
                await client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BrokerDown(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None
        self._client = client

    async def probe(self) -> None:
        """Connect and ``PING``, creating nothing (``batchd check``)."""
        client = aioredis.Redis.from_url(self._url.reveal(), socket_connect_timeout=10)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise BrokerDown(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None
        finally:
            await client.aclose()

    async def receive(self, limit: int, timeout_s: float) -> list[Incoming]:
        client = self._live()
        pending = self._cursor != ">"
        wait_ms = int(min(timeout_s, MAX_BLOCK_S) * 1000)
        block = None if pending or wait_ms <= 0 else max(1, wait_ms)
        try:
            answer = await client.xreadgroup(
                self._group,
                self._consumer,
                {self._stream: self._cursor},
                count=min(limit, self._prefetch),
                block=block,
            )
        except (RedisError, OSError) as exc:
            raise BrokerDown(
                scrub(f"read failed: {type(exc).__name__}: {exc}", self._url)
            ) from None
        entries: list[Any] = [entry for _, items in _streams(answer) for entry in items]
        if pending:
            self._cursor = _text(entries[-1][0]) if entries else ">"
        return [_incoming(entry_id, fields, pending) for entry_id, fields in entries]

    async def ack(self, messages: Sequence[Incoming]) -> None:
        if not messages:
            return
        client = self._live()
        try:
            await client.xack(self._stream, self._group, *(m.tag for m in messages))
        except (RedisError, OSError) as exc:
            raise BrokerDown(scrub(f"ack failed: {type(exc).__name__}: {exc}", self._url)) from None

    async def publish(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        client = self._live()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for m in messages:
                    fields: dict[Any, Any] = {
                        BODY_FIELD: m.body,
                        "message_id": m.message_id,
                    }
                    if m.correlation_id is not None:
                        fields["correlation_id"] = m.correlation_id
                    fields.update(m.headers)
                    pipe.xadd(m.to, fields)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerDown(
                scrub(f"publish failed: {type(exc).__name__}: {exc}", self._url)
            ) from None
        return []  # XADD makes the stream

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    def _live(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerDown("the connection to Redis is closed")
        return self._client


def _streams(answer: Any) -> list[Any]:
    """``[(stream, [(id, fields), ...])]`` from RESP2's list or RESP3's mapping."""
    if isinstance(answer, dict):
        return list(answer.items())
    return list(answer or [])


def _incoming(entry_id: Any, fields: Any, redelivered: bool) -> Incoming:
    decoded = {_text(k): v for k, v in (fields or {}).items()}
    body = decoded.pop(BODY_FIELD, b"")
    headers = {k: _text(v) for k, v in decoded.items()}
    entry = _text(entry_id)
    key = headers.get(KEY_HEADER) or entry
    return Incoming(
        body if isinstance(body, bytes) else str(body).encode(), headers, key, entry, redelivered
    )


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
