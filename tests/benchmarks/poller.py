"""The tracking baseline: per-job polling with the official SDK, one ``get`` per job every T s.

Each job's first poll is at a uniformly random offset in ``[0, T)``, so that from the start the
time from a job's completion to its next poll is uniform in ``[0, T)`` (steady state at once).
A job is dropped once a poll shows a terminal status. ``T`` is re-read from ``--interval-file``
every half second (the harness tunes it to the daemon's p95). On SIGTERM, writes ``--out``:
every call's send time, each detected job's detection time and emulated ``completed_at``.

    python -m tests.benchmarks.poller --server URL --ids ids.json --interval-file t.txt --out o.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from mistralai.client import Mistral

TERMINAL = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}


class Poller:
    def __init__(self, client: Mistral, interval_file: Path) -> None:
        self.client = client
        self.interval_file = interval_file
        self.interval_s = float(interval_file.read_text())
        self.calls: list[float] = []
        self.errors = 0
        self.detected: dict[str, tuple[float, int | None]] = {}
        self.intervals: list[tuple[float, float]] = [(time.time(), self.interval_s)]

    async def watch_interval(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(OSError, ValueError):
                value = float(self.interval_file.read_text())
                if value != self.interval_s:
                    self.interval_s = value
                    self.intervals.append((time.time(), value))

    async def track(self, job_id: str, rng: random.Random) -> None:
        next_at = time.monotonic() + rng.uniform(0, self.interval_s)
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                job = await self.client.batch.jobs.get_async(job_id=job_id)
            except Exception:
                self.errors += 1
                self.calls.append(time.time())
            else:
                self.calls.append(time.time())  # when answered: close to when it was counted
                if job.status in TERMINAL:
                    done = job.completed_at if isinstance(job.completed_at, int) else None
                    self.detected[job_id] = (time.time(), done)
                    return
            next_at += self.interval_s

    def result(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "detected": self.detected,
            "intervals": self.intervals,
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--interval-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ids = json.loads(args.ids.read_text())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Mistral(api_key=os.environ["MISTRAL_API_KEY"], server_url=args.server) as client:
        poller = Poller(client, args.interval_file)
        rng = random.Random(args.seed)
        tasks = [asyncio.create_task(poller.track(job_id, rng)) for job_id in ids]
        tasks.append(asyncio.create_task(poller.watch_interval()))
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    args.out.write_text(json.dumps(poller.result()))


if __name__ == "__main__":
    asyncio.run(main())
