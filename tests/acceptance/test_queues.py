"""Queue intake end to end: the real ``batchd run`` consuming RabbitMQ and Redis, killed with
SIGKILL at random moments (while consuming, flushing and publishing results) and its broker
connection cut, against the emulator process.

Scaled for CI time: the issue asks for 20,000 messages per broker; ``BATCHD_QUEUE_MESSAGES``
sets the count (default 2,000), the kills and cuts stay the same. Every custom_id gets a result
(at least once, the same message id on repeats), the emulator holds exactly the requests sent
(none twice), and the broker's password never appears in the logs or ``STATUS=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.acceptance.configs import daemon_config, write_config
from tests.acceptance.harness import Harness, RouteSpec
from tests.acceptance.tcp_proxy import CuttableProxy
from tests.services import AMQP, REDIS

MESSAGES = int(os.environ.get("BATCHD_QUEUE_MESSAGES", "2000"))
CANARY = "pw-canary-3f9d0b6e1a"
KILLS = 3
CUTS = 2


class Amqp:
    kind = "amqp"

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.results: list[tuple[str, str, str]] = []  # (custom_id, message id, body)

    async def produce(self, bodies: list[bytes]) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue(self.queue, durable=True)
            for i, body in enumerate(bodies):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=f"m{i}"), routing_key=self.queue
                )

    async def collect(self) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(f"{self.queue}.results", durable=True)
            while (m := await queue.get(fail=False, no_ack=True)) is not None:
                self.results.append((m.correlation_id or "", m.message_id or "", m.body.decode()))

    async def cleanup(self) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as conn:
            channel = await conn.channel()
            for suffix in ("", ".dead", ".results"):
                await channel.queue_delete(self.queue + suffix)


class Redis:
    kind = "redis"

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.results: list[tuple[str, str, str]] = []
        self._last = "0"

    async def produce(self, bodies: list[bytes]) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i, body in enumerate(bodies):
                    pipe.xadd(self.queue, {"body": body, "idempotency-key": f"m{i}"})
                await pipe.execute()
        finally:
            await client.aclose()

    async def collect(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            answer: Any = await client.xread({f"{self.queue}.results": self._last}, count=10_000)
        finally:
            await client.aclose()
        for _, entries in answer or []:
            for entry_id, raw in entries:
                self._last = entry_id.decode()
                fields = raw
                body = fields[b"body"].decode()
                self.results.append(
                    (fields[b"correlation_id"].decode(), fields[b"message_id"].decode(), body)
                )

    async def cleanup(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            await client.delete(*(self.queue + s for s in ("", ".dead", ".results")))
        finally:
            await client.aclose()


def source_table(kind: str, port: int, queue: str) -> dict[str, Any]:
    url = f"amqp://guest@127.0.0.1:{port}/" if kind == "amqp" else f"redis://127.0.0.1:{port}/0"
    table: dict[str, Any] = {"name": "app", "kind": kind, "url": url, "queue": queue}
    table |= {"route": "chat", "max_requests": 400, "max_wait_s": 1.0, "prefetch": 1000}
    table |= {"reconnect_max_s": 2.0}
    if kind == "amqp":
        table["password_env"] = "APP_BROKER_PW"
    return table


def request(i: int) -> bytes:
    body = {"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 4}
    return json.dumps({"custom_id": f"c{i}", "body": body}).encode()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["amqp", "redis"])
async def test_every_request_gets_a_result_once_submitted_through_kills_and_cuts(
    harness: Harness, kind: str
) -> None:
    service = AMQP if kind == "amqp" else REDIS
    url = service.require()
    parts = urlsplit(url)
    queue = f"batchd-accept-{os.getpid()}-{random.randrange(1 << 30):x}"
    broker: Amqp | Redis = Amqp(url, queue) if kind == "amqp" else Redis(url, queue)
    proxy = await CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 0).start()
    dead = CuttableProxy("127.0.0.1", 1)  # a second source whose broker never answers
    await dead.start()
    try:
        harness.start_emulator()
        dead_table = source_table("amqp", dead.port, f"{queue}-dead") | {"name": "down"}
        dead_table["password_env"] = "DOWN_BROKER_PW"
        assert harness.emulator is not None
        doc = daemon_config(
            data_dir=harness.data_dir,
            spool_root=harness.spool_root,
            emulator_url=harness.emulator.url,
            routes=[RouteSpec("chat")],
            collect={"delete_input_files": False},
        )
        doc["sources"] = [source_table(kind, proxy.port, queue), dead_table]
        write_config(harness.config_path, doc)
        env = {"APP_BROKER_PW": parts.password or "", "DOWN_BROKER_PW": CANARY}
        await harness.start(env=env)
        await broker.produce([request(i) for i in range(MESSAGES)])
        rng = random.Random(MESSAGES)
        actions = ["kill"] * KILLS + ["cut"] * CUTS
        rng.shuffle(actions)
        for action in actions:
            await asyncio.sleep(rng.uniform(0.3, 3.0))
            await broker.collect()
            if action == "kill":
                harness.kill()
                await harness.start(env=env)
            else:
                proxy.cut()

        async def all_answered() -> bool:
            await broker.collect()
            return len({cid for cid, _, _ in broker.results}) >= MESSAGES

        await harness.wait_until(all_answered, "a result for every custom_id", timeout_s=300)
        ids: dict[str, set[str]] = defaultdict(set)
        for cid, message_id, body in broker.results:
            ids[cid].add(message_id)
            assert json.loads(body)["status_code"] == 200
        assert set(ids) == {f"c{i}" for i in range(MESSAGES)}
        assert all(len(m) == 1 for m in ids.values())  # a repeat has the same message id
        assert harness.emulator is not None
        jobs = harness.emulator.jobs(harness.api_key)
        assert sum(int(j["total_requests"]) for j in jobs) == MESSAGES  # none sent twice
        text = "\n".join(run.stdout_path.read_text() for run in harness.runs)
        assert CANARY not in text
        assert harness.logged("queue.broker_down", source="down")
        assert len(harness.runs) == KILLS + 1 and proxy.cuts == CUTS
        statuses = [m.get("STATUS", "") for m in harness.listener.collect()]
        assert any("broker down: amqp amqp://guest@127.0.0.1:" in s for s in statuses)
        assert not any(CANARY in s for s in statuses)
    finally:
        await proxy.close()
        await dead.close()
        await broker.cleanup()
