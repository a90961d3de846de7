"""What refreshing N open OpenAI batches costs: the tracker's sweep (``find_tagged`` over the
batches list, active states, created since the oldest open job) against per-job polling (one
``GET /v1/batches/{id}`` each), on the in-process OpenAI emulator.

    python -m tests.benchmarks.openai_list_walk 1000 10000

Prints, per N, the list calls of one sweep and what per-job polling costs at the same
detection latency (one look per job per interval).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from batchd.emulator import EmulatorConfig, ProcessingModel
from batchd.emulator.openai import serve_openai
from batchd.models import JobState
from batchd.providers import openai_wire as wire
from batchd.providers.base import JobSpec, ProviderSettings, TagQuery
from batchd.providers.openai import OpenAIProvider
from batchd.secret import Secret

CHAT = "/v1/chat/completions"
ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.CANCELLING)


async def measure(n: int) -> str:
    open_for_ever = ProcessingModel(queue_s=10**6, jitter=0)
    config = EmulatorConfig(api_keys=("k",), seed=1, processing=open_for_ever)
    async with serve_openai(config) as emu, aiohttp.ClientSession() as session:
        settings = ProviderSettings(
            name="openai", base_url=emu.url + "/v1", api_key=Secret("k"), requests_per_second=0
        )
        provider = OpenAIProvider(settings, session)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "in.jsonl"
            path.write_bytes(wire.encode_line("a", {"messages": []}, CHAT, "m"))
            ref = await provider.upload_file(path)
        oldest = emu.now()
        for i in range(n):
            tag = {"batchd": "me", "batchd_job": f"j{i}"}
            await provider.create_job(JobSpec(endpoint=CHAT, input_files=(ref.id,), metadata=tag))
        provider.calls.clear()
        started = time.monotonic()
        query = TagQuery({"batchd": "me"}, states=ACTIVE, created_after=oldest, page_size=100)
        found = [job async for job in provider.find_tagged(query)]
        elapsed = time.monotonic() - started
    calls = provider.calls["list_jobs"]
    return (
        f"N={n}: one sweep found {len(found)} open batches with {calls} list calls "
        f"({elapsed:.2f} s); per-job polling: {n} calls. Per job-hour at one look a minute: "
        f"{60 * calls / n:.2f} against 60"
    )


def main(argv: list[str]) -> None:
    for n in [int(a) for a in argv] or [1000, 10_000]:
        print(asyncio.run(measure(n)))


if __name__ == "__main__":
    main(sys.argv[1:])
