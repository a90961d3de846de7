"""An in-memory broker with the ``Broker`` semantics: unacknowledged messages come back
(redelivered) after a reconnect; it can be down, or fail the next ack."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from batchd.queues.broker import BrokerDown, Incoming, Outgoing


class FakeBroker:
    def __init__(self) -> None:
        self.ready: list[Incoming] = []
        self.unacked: dict[int, Incoming] = {}
        self.acked: list[Incoming] = []
        self.published: list[Outgoing] = []
        self.connected = False
        self.down = False
        self.fail_next_ack = False
        self.missing: set[str] = set()  # queues that do not exist (AMQP refuses them)
        self.connects = 0
        self._tag = 0

    def put(self, body: Any, *, key: str | None = None, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._tag += 1
        self.ready.append(Incoming(data, headers, key, self._tag))

    def request(self, custom_id: str, **extra: Any) -> None:
        body = {"messages": [{"role": "user", "content": f"q-{custom_id}"}]}
        self.put({"custom_id": custom_id, "body": body, **extra}, key=f"m-{custom_id}")

    async def connect(self) -> None:
        if self.down:
            raise BrokerDown("ConnectionRefusedError: [Errno 111] Connect call failed")
        self.connected = True
        self.connects += 1

    async def probe(self) -> None:
        if self.down:
            raise BrokerDown("ConnectionRefusedError: [Errno 111] Connect call failed")

    async def receive(self, limit: int, timeout_s: float) -> list[Incoming]:
        self._check()
        taken, self.ready = self.ready[:limit], self.ready[limit:]
        for m in taken:
            self.unacked[m.tag] = m
        return taken

    async def ack(self, messages: Sequence[Incoming]) -> None:
        self._check()
        if self.fail_next_ack:
            self.fail_next_ack = False
            self.lose()
            raise BrokerDown("ack failed: connection reset")
        for m in messages:
            self.acked.append(self.unacked.pop(m.tag))

    async def publish(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        self._check()
        refused = [m for m in messages if m.to in self.missing]
        self.published += [m for m in messages if m.to not in self.missing]
        return refused

    async def close(self) -> None:
        self.lose()

    def lose(self) -> None:
        """The connection drops: what was delivered and not acknowledged is delivered again."""
        self.connected = False
        back = [
            Incoming(m.body, m.headers, m.key, m.tag, redelivered=True)
            for m in sorted(self.unacked.values(), key=lambda m: m.tag)
        ]
        self.unacked.clear()
        self.ready = back + self.ready

    def _check(self) -> None:
        if not self.connected:
            raise BrokerDown("the connection is closed")

    def dead(self) -> list[Outgoing]:
        return [m for m in self.published if m.to.endswith(".dead")]
