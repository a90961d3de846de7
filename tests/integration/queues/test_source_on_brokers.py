"""The queue source on real RabbitMQ and Redis: requests batched into submissions committed
before the ack, bad messages in the dead-letter queue with their reason, and what comes back
after a lost connection recognised, never submitted twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from batchd.queues.broker import REASON_HEADER
from batchd.queues.commit import Committer
from batchd.queues.config import SourceConfig
from batchd.queues.publish import ResultPublisher
from batchd.queues.source import QueueSource
from batchd.store.sqlite import SqliteJobStore
from tests.unit.loops.conftest import World

from .conftest import Harness


def make_source(
    world: World, harness: Harness, queue: str, tmp_path: Path, **overrides: Any
) -> QueueSource:
    fields: dict[str, Any] = {
        "name": "orders",
        "kind": harness.kind,
        "url": "amqp://127.0.0.1/" if harness.kind == "amqp" else "redis://127.0.0.1/",
        "queue": queue,
        "route": "chat",
        "max_requests": 10,
        "max_wait_s": 30,
        "prefetch": 50,
    }
    cfg = SourceConfig.model_validate(fields | overrides)
    broker = harness.broker(
        queue, prefetch=cfg.prefetch, declare=(cfg.dead_letter_to, cfg.results_to)
    )
    committer = Committer(
        world.store,
        world.claimer,
        source="orders",
        records=tmp_path / "records",
        routes=[world.route],
        clock=world.clock,
    )
    publisher = ResultPublisher(
        world.store,
        tmp_path / "publish",
        results_to=cfg.results_to,
        source="orders",
        clock=world.clock,
    )
    return QueueSource(
        cfg,
        broker,
        committer,
        publisher,
        [world.route],
        clock=world.clock,
        max_file_bytes=10_000_000,
        max_lines=10_000,
    )


async def counted(store: SqliteJobStore, subs: int, source: QueueSource, held: int) -> bool:
    return len(await store.list_submissions()) == subs and source.held() == held


def request(i: int) -> bytes:
    body = {"messages": [{"role": "user", "content": f"q{i}"}]}
    return json.dumps({"custom_id": f"c{i}", "body": body}).encode()


async def passes(source: QueueSource, until: Callable[[], Awaitable[bool]]) -> None:
    """Run passes until ``until()`` holds (at most 100, a little apart: messages arrive)."""
    for _ in range(100):
        await source.run_once()
        if await until():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the source did not get there: {source.counts}, held {source.held()}")


async def test_requests_are_batched_and_bad_ones_dead_lettered(
    harness: Harness, tmp_path: Path
) -> None:
    store = SqliteJobStore(tmp_path / "db.sqlite3")
    await store.open()
    world = World(tmp_path, store=store)
    queue = harness.name("src")
    source = make_source(world, harness, queue, tmp_path)
    try:
        for i in range(25):
            await harness.produce(queue, request(i), **{"idempotency-key": f"k{i}"})
        await harness.produce(queue, b"{broken", **{"idempotency-key": "bad"})
        await passes(source, lambda: counted(store, 2, source, 5))
        subs = await store.list_submissions()
        assert sorted(s.line_count for s in subs) == [10, 10]
        world.clock.advance(31)  # the last five wait max_wait_s
        await passes(source, lambda: counted(store, 3, source, 0))
        subs = await store.list_submissions()
        assert sorted(s.line_count for s in subs) == [5, 10, 10]
        (dead,) = await harness.drain(f"{queue}.dead")
        assert dead.body == b"{broken" and dead.headers[REASON_HEADER].startswith("invalid JSON")
        assert source.held() == 0
    finally:
        source.close()
        await store.close()


async def test_messages_back_after_a_lost_connection_are_not_submitted_twice(
    harness: Harness, tmp_path: Path
) -> None:
    store = SqliteJobStore(tmp_path / "db.sqlite3")
    await store.open()
    world = World(tmp_path, store=store)
    queue = harness.name("lost")
    source = make_source(world, harness, queue, tmp_path)
    try:
        for i in range(10):
            await harness.produce(queue, request(i), **{"idempotency-key": f"k{i}"})
        broker = source._broker
        real_ack = broker.ack
        dropped = False

        async def ack_then_drop(messages):
            nonlocal dropped
            if not dropped:  # committed, and the connection drops before the ack
                dropped = True
                await broker.close()
            await real_ack(messages)

        broker.ack = ack_then_drop  # type: ignore[method-assign]
        await passes(source, lambda: counted(store, 1, source, 0))
        world.clock.advance(120)

        async def recognised() -> bool:
            return source.counts["recognised"] == 10 and source.held() == 0

        await passes(source, recognised)
        subs = await store.list_submissions()
        assert [s.line_count for s in subs] == [10]
        assert source.counts["recognised"] == 10
        assert source.held() == 0
        again = harness.broker(queue)
        await again.connect()
        assert await again.receive(10, timeout_s=0.5) == []  # everything was acknowledged
        await again.close()
    finally:
        source.close()
        await store.close()


async def test_results_come_back_on_reply_to_and_the_results_queue(
    harness: Harness, tmp_path: Path
) -> None:
    store = SqliteJobStore(tmp_path / "db.sqlite3")
    await store.open()
    world = World(tmp_path, store=store)
    queue = harness.name("results")
    replies = harness.name("app")
    await harness.drain(replies)  # RabbitMQ: the application's reply queue exists
    source = make_source(world, harness, queue, tmp_path)
    try:
        for i in range(10):
            message = json.loads(request(i))
            if i % 2:
                message["reply_to"] = replies
            await harness.produce(queue, json.dumps(message).encode())
        await passes(source, lambda: counted(store, 1, source, 0))
        await world.submitter.run_once()
        for job in await store.list_jobs():
            world.provider.finish(job.provider_job_id or "")
        for _ in range(3):
            await world.tracker.run_once()
            await world.collector.run_once()
            world.clock.advance(30)
        (sub,) = await store.list_submissions()

        async def published() -> bool:
            return source._publisher.published == 10

        await passes(source, published)
        odd = await harness.drain(replies)
        even = await harness.drain(f"{queue}.results")
        assert sorted(m.correlation_id or "" for m in odd) == [f"c{i}" for i in (1, 3, 5, 7, 9)]
        assert sorted(m.correlation_id or "" for m in even) == [f"c{i}" for i in (0, 2, 4, 6, 8)]
        first = json.loads(odd[0].body)
        assert first["status_code"] == 200 and first["submission_id"] == sub.id
        assert odd[0].message_id == f"{sub.id}/{first['custom_id']}"
    finally:
        source.close()
        await store.close()
