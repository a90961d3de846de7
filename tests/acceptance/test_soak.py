"""Soak variant (``BATCHD_SOAK=1``): files keep arriving while the daemon is stopped with
SIGTERM and restarted at random moments; every file still ends in done/ exactly once, with one
provider job per chunk and whole, ordered results."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from batchd.models import Outcome
from tests.acceptance.harness import Harness, RouteSpec, chat_lines, read_jsonl

CYCLES = 12
FILES_PER_CYCLE = 4
REQUESTS = 7  # two chunks of at most 5


@pytest.mark.slow
async def test_files_flow_through_repeated_sigterm_restarts(harness: Harness) -> None:
    rng = random.Random(20)
    emulator = harness.start_emulator()
    harness.configure([RouteSpec("chat")], provider={"max_requests_per_job": 5})
    await harness.start()
    prefixes: dict[str, str] = {}  # file name -> custom_id prefix of its requests
    for cycle in range(CYCLES):
        for i in range(FILES_PER_CYCLE):
            name, prefix = f"c{cycle}-{i}.jsonl", f"c{cycle}f{i}r"
            harness.drop("chat", name, chat_lines(REQUESTS, prefix))
            prefixes[name] = prefix
        await asyncio.sleep(rng.uniform(0.0, 0.6))  # stop at a random point of the flow
        assert await harness.stop() < 10.0
        await harness.start()

    for name, prefix in prefixes.items():
        sub = await harness.wait_done(name, timeout_s=60)
        assert sub.outcome is Outcome.SUCCEEDED
        records = read_jsonl(Path(sub.results_dir or "") / "results.jsonl")
        assert [r["custom_id"] for r in records] == [f"{prefix}{k}" for k in range(REQUESTS)]
    store = await harness.store()
    assert len(await store.list_submissions()) == len(prefixes)
    assert len(emulator.jobs(harness.api_key)) == 2 * len(prefixes)
    await harness.stop()
