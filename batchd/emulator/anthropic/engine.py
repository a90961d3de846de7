"""The batch engine: creates message batches, ends them on time, writes their results.

As in the Mistral engine, one timer task serves every batch (a heap of due times, woken by a
create, a cancel or ``advance``), reads bring a batch up to date first, and real work (writing
the requests and the results to disk) runs in a small thread pool. A batch shows ``ended``
only once its results file exists; the real time that took (times ``speed``) is added to
``ended_at``. Batches are scoped to their API key (the real API scopes them to a workspace).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from batchd.emulator.anthropic.batches import BatchRecord, canceled_end, plan
from batchd.emulator.anthropic.requests import param_problem
from batchd.emulator.anthropic.results import ResultsPlan, write_results
from batchd.emulator.anthropic.wire import AnthropicError, derived_id, invalid, not_found
from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.engine import owner_of
from batchd.emulator.scan import Cancelled

log = structlog.get_logger(__name__)
MAX_TICK_S = 1.0
WORKERS = 4
T = TypeVar("T")


class BatchEngine:
    def __init__(
        self, config: EmulatorConfig, clock: EmulatedClock, ids: IdFactory, root: Path
    ) -> None:
        self.config = config
        self.clock = clock
        self.root = root
        self.batches: dict[str, BatchRecord] = {}  # in creation order
        self._seqs: dict[str, int] = {}  # every id ever created: a deleted one is still a cursor
        self._ids = ids
        self._heap: list[tuple[float, int, str]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="emulator-anthropic")
        self._ticker: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle of the engine
    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._ticker is not None:
            await self._ticker
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._pool.shutdown(wait=True)

    async def settle(self) -> None:
        """Wait until no results file is being written."""
        while True:
            self.catch_up()
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.catch_up()
        self._wake.set()

    # ---------------------------------------------------------------- verbs
    async def create(self, requests: list[dict[str, Any]], api_key: str) -> BatchRecord:
        seq = len(self._seqs) + 1
        batch_id = derived_id("msgbatch_", f"{self._ids.new()}:{seq}")
        path = self.root / f"{batch_id}.requests.jsonl"
        invalid_at = [i for i, r in enumerate(requests) if param_problem(r["params"]) is not None]
        await self._in_thread(_write_requests, path, requests)
        rng = self._jitter_rng(seq)
        jitter = self.config.processing.jitter
        factors = [1 + jitter * (2 * rng.random() - 1) for _ in range(2)]
        now = self.clock.now()
        start_at, run_s, end = plan(len(requests), now, self.config.processing, *factors)
        batch = BatchRecord(
            id=batch_id,
            seq=seq,
            owner=owner_of(api_key),
            created_at=now,
            n_requests=len(requests),
            invalid=invalid_at,
            requests_path=path,
            start_at=start_at,
            run_s=run_s,
            end=end,
        )
        self._seqs[batch_id] = seq
        self.batches[batch_id] = batch
        self._schedule(batch)
        return batch

    def _jitter_rng(self, seq: int) -> random.Random:
        seed = self.config.seed
        return random.Random(f"jitter:{seed}:{seq}") if seed is not None else random.Random()

    def find(self, api_key: str, batch_id: str) -> BatchRecord:
        batch = self.batches.get(batch_id)
        if batch is None or batch.owner != owner_of(api_key):
            raise not_found(batch_id)
        self.refresh(batch)
        return batch

    def page(
        self, api_key: str, after_id: str | None, before_id: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        """Newest first; ``after_id`` (older than it) and ``before_id`` (newer) are exclusive.
        With ``before_id`` the page is the ``limit`` batches just newer than it."""
        self.catch_up()
        owner = owner_of(api_key)
        older_than = self._cursor(after_id, "after_id")
        newer_than = self._cursor(before_id, "before_id")
        found = [
            b
            for b in reversed(self.batches.values())
            if b.owner == owner and newer_than < b.seq < older_than
        ]
        has_more = len(found) > limit
        return (found[-limit:] if before_id is not None else found[:limit]), has_more

    def _cursor(self, batch_id: str | None, name: str) -> float:
        if batch_id is None:
            return float("inf") if name == "after_id" else float("-inf")
        seq = self._seqs.get(batch_id)
        if seq is None:
            raise invalid(f"{name}: no message batch found with id '{batch_id}'")
        return float(seq)

    def cancel(self, batch: BatchRecord) -> None:
        """Idempotent; a batch that has ended (or is writing its results) stays as it is."""
        now = self.clock.now()
        end = canceled_end(batch, now, self.config.processing.cancel_s)
        if end is None:
            return
        batch.cancel_at = now
        batch.end = end
        self._schedule(batch)

    def delete(self, batch: BatchRecord) -> None:
        if not batch.ready:
            raise AnthropicError(
                400,
                f"Message batch '{batch.id}' has not finished processing and cannot be deleted; "
                "cancel it first",
            )
        batch.deleted = True
        del self.batches[batch.id]
        if batch.results_path is not None:
            batch.results_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- time
    def catch_up(self) -> None:
        now = self.clock.now()
        while self._heap and self._heap[0][0] <= now:
            due, _seq, batch_id = heapq.heappop(self._heap)
            batch = self.batches.get(batch_id)
            if batch is not None and batch.next_due == due:
                batch.next_due = None
                self.refresh(batch)

    def refresh(self, batch: BatchRecord) -> None:
        """Start writing the results of a batch whose processing has stopped."""
        if batch.ready or batch.writing or batch.deleted:
            return
        if self.clock.now() >= batch.end.at:
            batch.writing = True
            self._spawn(self._write(batch))
            return
        self._schedule(batch)

    def _schedule(self, batch: BatchRecord) -> None:
        due = batch.end.at
        if batch.ready or batch.writing or due == batch.next_due:
            return
        batch.next_due = due
        heapq.heappush(self._heap, (due, batch.seq, batch.id))
        self._wake.set()

    async def _tick_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # a bug in one batch must not stop every other batch
                log.exception("emulator.tick_failed")
            delay = MAX_TICK_S
            if self._heap:
                wait_s = self.clock.real_delay_s(self._heap[0][0] - self.clock.now())
                delay = min(MAX_TICK_S, max(0.001, wait_s))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    # ---------------------------------------------------------------- background work
    def _spawn(self, coro: Any) -> None:
        if self._stop.is_set():
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _write(self, batch: BatchRecord) -> None:
        path = self.root / f"{batch.id}.results.jsonl"
        results = ResultsPlan(batch.requests_path, path, batch.end.done, batch.end.kind)
        started = time.monotonic()
        try:
            await self._in_thread(write_results, results, self._stop)
        except Cancelled:
            return
        batch.results_path = path
        batch.ended_at = batch.end.at + self.clock.scaled(time.monotonic() - started)
        batch.ready = True
        batch.requests_path.unlink(missing_ok=True)
        if batch.deleted:
            path.unlink(missing_ok=True)
        log.debug("emulator.batch_ended", batch_id=batch.id, end=batch.end.kind.value)


def _write_requests(path: Path, requests: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as sink:
        sink.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in requests)
