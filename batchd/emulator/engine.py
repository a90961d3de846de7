"""The job engine: creates jobs, moves them through their lifecycle, writes their results.

One timer task serves every job: a heap holds each job's next due time (end of validation,
start of finalisation), and the task sleeps until the earliest one or until woken (new job,
cancel, ``advance``). Reads also bring a job up to date first, so what a client sees never lags
the emulated clock. Real work (scanning the input, writing results) runs in a small thread pool
and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.faults import FaultInjector
from batchd.emulator.files import FileRecord, FileStore
from batchd.emulator.generate import FileSummary, generate
from batchd.emulator.lifecycle import (
    End,
    JobRecord,
    finish_due,
    planned_end,
    progress,
    run_seconds,
    start_time,
)
from batchd.emulator.results import (
    plan_results,
    read_jsonl,
    register_result,
    unlink,
    with_fault,
    write_jsonl,
)
from batchd.emulator.scan import Cancelled, ScanResult, scan
from batchd.emulator.validation import CreateJobIn, JobStatus
from batchd.emulator.wire import bad_request, conflict

log = structlog.get_logger(__name__)
MAX_TICK_S = 1.0
WORKERS = 4


def owner_of(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class Engine:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: EmulatedClock,
        ids: IdFactory,
        files: FileStore,
        faults: FaultInjector | None = None,
    ) -> None:
        self.config = config
        self.faults = faults or FaultInjector()
        self.clock = clock
        self.files = files
        self.jobs: dict[str, JobRecord] = {}
        self._ids = ids
        self._seq = 0
        self._heap: list[tuple[float, int, str]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="emulator")
        self._ticker: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle of the engine
    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        """Stop the timer and wait for background work, which gives up at its next check.
        (The timer is stopped by a flag, not ``cancel()``: on Python 3.11 ``wait_for`` can
        swallow a cancellation that races with its own wake-up.)"""
        self._stop.set()
        self._wake.set()
        if self._ticker is not None:
            await self._ticker
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._pool.shutdown(wait=True)

    async def settle(self) -> None:
        """Wait until no background work (scans, result files) is in flight."""
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
    async def create(self, body: CreateJobIn, api_key: str) -> JobRecord:
        job_id = self._ids.new()
        if body.input_files:
            input_files = [str(u) for u in body.input_files]
            sources = [(fid, self.files.get(fid).path) for fid in input_files]
            inline_path = None
        else:
            input_files, inline_path = [], self.files.root / f".inline-{job_id}.jsonl"
            lines = [{"custom_id": r.custom_id, "body": r.body} for r in body.requests or []]
            await self._in_thread(write_jsonl, inline_path, lines)
            sources = [("requests", inline_path)]
        job = self._new_record(
            job_id=job_id,
            body=body,
            api_key=api_key,
            input_files=input_files,
            sources=sources,
            inline_path=inline_path,
        )
        self.files.pin(input_files)
        self.jobs[job_id] = job
        self._spawn(self._scan(job))
        self._schedule(job)
        return job

    def _new_record(
        self,
        *,
        job_id: str,
        body: CreateJobIn,
        api_key: str,
        input_files: list[str],
        sources: list[tuple[str, Path]],
        inline_path: Path | None,
    ) -> JobRecord:
        self._seq += 1
        rng = self._jitter_rng(self._seq)
        jitter = self.config.processing.jitter
        queue_factor = 1 + jitter * (2 * rng.random() - 1)
        run_factor = 1 + jitter * (2 * rng.random() - 1)
        return JobRecord(
            id=job_id,
            seq=self._seq,
            created_at=self.clock.now(),
            endpoint=body.endpoint.value,
            model=body.model,
            agent_id=body.agent_id,
            metadata=body.metadata,
            input_files=input_files,
            inline=inline_path is not None,
            timeout_hours=body.timeout_hours,
            owner=owner_of(api_key),
            sources=sources,
            queue_s=self.config.processing.queue_s * queue_factor,
            run_factor=run_factor,
            inline_path=inline_path,
        )

    def _jitter_rng(self, seq: int) -> random.Random:
        seed = self.config.seed
        return random.Random(f"jitter:{seed}:{seq}") if seed is not None else random.Random()

    def get(self, job_id: str) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is not None:
            self.refresh(job)
        return job

    def cancel(self, job: JobRecord) -> None:
        self.refresh(job)
        now = self.clock.now()
        if job.ready:
            if self.config.behaviour.cancel_terminal == "error":
                status = job.end.kind.value if job.end else "terminal"
                raise bad_request(f"Cannot cancel a batch job with status {status}")
            return
        if job.cancel_at is not None or job.finalizing:
            return  # idempotent; or too late: the results are being written
        if job.end is not None and now >= job.end.at:
            return
        done = min(progress(job, now), job.end.done if job.end else 0)
        job.cancel_at = now
        job.end = End(JobStatus.CANCELLED, now + self.config.processing.cancel_s, done)
        self._schedule(job)
        self._wake.set()

    def delete(self, job: JobRecord) -> None:
        self.refresh(job)
        if not job.ready and self.config.behaviour.delete_active == "reject":
            raise conflict("Cannot delete a batch job that has not finished; cancel it first")
        job.deleted = True
        del self.jobs[job.id]
        if not job.finalizing:
            self._release(job)

    # ---------------------------------------------------------------- time
    def catch_up(self) -> None:
        now = self.clock.now()
        while self._heap and self._heap[0][0] <= now:
            due, _seq, job_id = heapq.heappop(self._heap)
            job = self.jobs.get(job_id)
            if job is not None and job.next_due == due:
                job.next_due = None
                self.refresh(job)

    def refresh(self, job: JobRecord) -> None:
        """Materialise every transition that emulated time allows."""
        if job.ready or job.deleted:
            return
        now = self.clock.now()
        if job.end is None:
            self._maybe_start(job, now)
        due = job.end is not None and not job.finalizing
        if due and now >= finish_due(job, self.config.processing):
            self._finalize(job)
        self._schedule(job)

    def _maybe_start(self, job: JobRecord, now: float) -> None:
        start = start_time(job)
        if start is None or start >= job.deadline:
            if now >= job.deadline:
                job.end = End(JobStatus.TIMEOUT_EXCEEDED, job.deadline, 0)
            return
        if now < start:
            return
        assert job.scan is not None
        if job.scan.errors:
            job.errors = list(job.scan.errors)
            job.end = End(JobStatus.FAILED, start, 0)
            return
        job.started_at = start
        job.run_s = run_seconds(job.scan.n_requests, self.config.processing, job.run_factor)
        job.end = planned_end(job)

    def _schedule(self, job: JobRecord) -> None:
        due = self._next_due(job)
        if due is None or due == job.next_due:
            return
        job.next_due = due
        heapq.heappush(self._heap, (due, job.seq, job.id))
        self._wake.set()

    def _next_due(self, job: JobRecord) -> float | None:
        if job.ready or job.deleted or job.finalizing:
            return None
        if job.end is not None:
            return finish_due(job, self.config.processing)
        start = start_time(job)
        return start if start is not None and start < job.deadline else job.deadline

    async def _tick_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # a bug in one job must not stop every other job
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
            coro.close()  # shutting down: start nothing new
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _scan(self, job: JobRecord) -> None:
        max_requests = self.config.behaviour.max_requests_per_job

        def work() -> ScanResult:
            return scan(
                job.sources, job.endpoint, job.model, max_requests=max_requests, cancel=self._stop
            )

        started = time.monotonic()
        try:
            result = await self._in_thread(work)
        except Cancelled:
            return
        except (OSError, ValueError, RecursionError) as exc:
            message = f"Could not read the input: {exc}"
            result = ScanResult(errors=[{"message": message, "count": 1}])
        job.scan = result
        # Work takes its real duration in emulated time, counted from when it was due (an
        # ``advance`` while it ran does not make it look longer).
        job.scan_done_at = job.created_at + self.clock.scaled(time.monotonic() - started)
        self.refresh(job)

    def _finalize(self, job: JobRecord) -> None:
        job.finalizing = True
        job.finalize_started = time.monotonic()
        assert job.end is not None
        if job.end.done == 0:
            self._complete(job, None, None)
            return
        self._spawn(self._write_results(job, job.end))

    async def _write_results(self, job: JobRecord, end: End) -> None:
        behaviour = self.config.behaviour
        plan, responder, out_id, err_id = plan_results(job, end, self.files, self._ids, behaviour)
        rule = self.faults.decide_results(job.endpoint)
        plan, counted = with_fault(plan, rule)
        if rule is not None:
            log.info(
                "emulator.fault_injected",
                kind=rule.kind.value,
                job_id=job.id,
                lines=plan.done,
                counted=end.done if counted is None else counted,
            )
        try:
            out, err = await self._in_thread(generate, plan, responder, self._stop)
        except Cancelled:
            return
        except Exception as exc:  # a disk error, or a bug: the job fails, the engine goes on
            log.exception("emulator.results_failed", job_id=job.id, error=str(exc))
            job.errors = [{"message": "Internal error while writing the results", "count": 1}]
            job.end = End(JobStatus.FAILED, end.at, end.done)
            out = err = FileSummary()
        now = int(self.clock.now())
        out_record = register_result(
            self.files, job, out_id, out, sample_type="batch_result", created_at=now
        )
        err_record = register_result(
            self.files, job, err_id, err, sample_type="batch_error", created_at=now
        )
        job.counted = counted
        self._complete(job, out_record, err_record)

    def _complete(self, job: JobRecord, out: FileRecord | None, err: FileRecord | None) -> None:
        assert job.end is not None
        job.output_file = out.id if out else None
        job.error_file = err.id if err else None
        writing_s = self.clock.scaled(time.monotonic() - job.finalize_started)
        job.completed_at = finish_due(job, self.config.processing) + writing_s
        job.ready = True
        self._release(job)
        log.debug("emulator.job_ended", job_id=job.id, status=job.end.kind.value, done=job.end.done)

    def _release(self, job: JobRecord) -> None:
        if job.pinned:
            job.pinned = False
            self.files.unpin(job.input_files)
            if job.inline_path is not None:
                unlink(job.inline_path)

    async def read_outputs(self, job: JobRecord) -> list[Any]:
        paths = [
            self.files.get(f).path
            for f in (job.output_file, job.error_file)
            if f is not None and self.files.exists(f)
        ]
        cap = self.config.behaviour.max_inline_outputs
        result: list[Any] = await self._in_thread(read_jsonl, paths, cap)
        return result
