"""The ``Broker`` seam: what a queue source needs of RabbitMQ or Redis Streams.

A broker delivers ``Incoming`` messages that stay unacknowledged (held by the broker for
redelivery) until ``ack``; it publishes (dead letters, results) durably. Any loss of the
connection raises ``BrokerDown``: every message not yet acknowledged on it comes back later
(``Incoming.redelivered`` may say so), so the source forgets what it held and reconnects with
``Backoff``. Adapters: ``batchd.queues.amqp`` (aio-pika) and ``batchd.queues.redis_streams``
(redis-py's asyncio client), imported only when a source of their kind is configured.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from batchd.secret import Secret

REASON_HEADER: Final = "batchd-reason"
SOURCE_HEADER: Final = "batchd-source"
KEY_HEADER: Final = "idempotency-key"  # a message's own id, when the broker's is not set


class BrokerDown(Exception):
    """The broker cannot be reached or the connection was lost (the message says why, without
    the URL's password)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    body: bytes
    headers: Mapping[str, Any]
    key: str | None  # the message id (AMQP message_id, idempotency-key, Redis entry id)
    tag: Any  # the broker's handle to acknowledge it
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    to: str  # a queue (AMQP default exchange) or a stream
    body: bytes
    message_id: str
    correlation_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Broker(Protocol):
    async def connect(self) -> None:
        """Connect, declare what the source uses, start consuming (``BrokerDown`` if not)."""
        ...

    async def probe(self) -> None:
        """Connect and disconnect, changing nothing (``batchd check``); ``BrokerDown`` if not."""
        ...

    async def receive(self, limit: int, timeout_s: float) -> list[Incoming]:
        """At most ``limit`` messages, waiting up to ``timeout_s`` for the first one."""
        ...

    async def ack(self, messages: Sequence[Incoming]) -> None: ...

    async def publish(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        """Publish durably (confirmed by the broker) or raise ``BrokerDown``. Returns the
        messages the broker refused (AMQP: no queue of that name), not published."""
        ...

    async def close(self) -> None:
        """Drop the connection (unacknowledged messages go back to the broker)."""
        ...


def scrub(text: str, url: Secret) -> str:
    """``text`` (an error) without the URL's password or the URL itself, at most one line."""
    from urllib.parse import unquote, urlsplit

    revealed = url.reveal()
    password = urlsplit(revealed).password
    for secret in {revealed, password or "", unquote(password or "")} - {""}:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


@dataclass
class Backoff:
    """Reconnect delays: doubling from ``base_s`` to ``max_s``, with jitter (50-100 %)."""

    base_s: float = 0.5
    max_s: float = 60.0
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay: float = min(self.max_s, self.base_s * 2.0 ** min(self.failures - 1, 30))
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0
