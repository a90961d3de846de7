"""Queue ingest rate: request messages committed to the store and acknowledged, per second.

``python -m tests.benchmarks.queue_ingest [--messages N] [--kind amqp|redis ...]``

One ``QueueSource`` (the daemon's own, in this process) on a SQLite store, consuming N request
messages already waiting in a fresh queue or stream of the machine's broker, flushed in
batches of ``max_requests`` (10,000, the default). Timed from the first pass until every message
is committed and acknowledged; the queue is deleted afterwards. Prints one JSON line per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from batchd.log import configure_logging
from batchd.store.sqlite import SqliteJobStore
from tests.acceptance.test_queues import Amqp, Redis, request
from tests.integration.queues.conftest import AmqpHarness, RedisHarness
from tests.integration.queues.test_source_on_brokers import make_source
from tests.services import AMQP, REDIS
from tests.unit.loops.conftest import World


async def measure(kind: str, messages: int) -> dict[str, object]:
    url = AMQP.url if kind == "amqp" else REDIS.url
    harness = AmqpHarness(url) if kind == "amqp" else RedisHarness(url)
    queue = harness.name("bench")
    producer = Amqp(url, queue) if kind == "amqp" else Redis(url, queue)
    await producer.produce([request(i) for i in range(messages)])
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = SqliteJobStore(root / "db.sqlite3")
        await store.open()
        world = World(root, store=store)
        source = make_source(world, harness, queue, root, max_requests=10_000, prefetch=20_000)
        started = time.perf_counter()
        try:
            while source.counts["received"] < messages or source.held() > 0:
                if not await source.run_once():
                    await source.wait()  # as the daemon's loop does: deliveries arrive meanwhile
                if source.held() and source.counts["received"] >= messages:
                    await source.drain()  # the last partial batch: no max_wait_s in a benchmark
            elapsed = time.perf_counter() - started
            subs = await store.list_submissions()
        finally:
            source.close()
            await store.close()
            await harness.cleanup()
    return {
        "broker": kind,
        "messages": messages,
        "submissions": len(subs),
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(messages / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.queue_ingest")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--kind", nargs="+", choices=["amqp", "redis"], default=["amqp", "redis"])
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(level="warning", fmt="console")
    for kind in args.kind:
        print(json.dumps(asyncio.run(measure(kind, args.messages))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
