"""The OpenAI batch engine: the Mistral emulator's engine (clock, timer, processing model,
cancel, partial results) with OpenAI's input rules, result lines and files.

A batch reads one input file. Validation (``scan``) runs in a worker thread while the batch is
``validating``; then the enqueued-token limit is checked against the other open batches of the
same key and model (``enqueued_token_limit``; none by default), and a batch over it fails with
``token_limit_exceeded``. Result files get ``purpose: batch_output`` and, when the create asked
for it, an ``expires_at`` from ``output_expires_after``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from batchd.emulator.config import MIB
from batchd.emulator.engine import Engine, owner_of
from batchd.emulator.faults import FaultKind
from batchd.emulator.files import FileRecord
from batchd.emulator.lifecycle import End, JobRecord
from batchd.emulator.openai.generate import Outcome, Plan, Written, generate
from batchd.emulator.openai.scan import BatchScan, scan_batch
from batchd.emulator.openai.wire import batch_to_wire
from batchd.emulator.scan import Cancelled
from batchd.emulator.validation import JobStatus

log = structlog.get_logger(__name__)
UNPROCESSED = {JobStatus.TIMEOUT_EXCEEDED: "expired", JobStatus.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class OpenAIOptions:
    """OpenAI's own limits (reference 1.2, 1.3) and the enqueued-token limit."""

    max_requests_per_batch: int = 50_000
    max_batch_file_bytes: int = 200 * MIB
    enqueued_token_limit: int | None = None  # per key and model; None: no limit

    def __post_init__(self) -> None:
        if self.max_requests_per_batch < 1 or self.max_batch_file_bytes < 1:
            raise ValueError("OpenAI limits must be >= 1")
        if self.enqueued_token_limit is not None and self.enqueued_token_limit < 1:
            raise ValueError("enqueued_token_limit must be >= 1")


@dataclass
class BatchExtra:
    """What a batch has beyond the shared ``JobRecord``."""

    input_file_id: str
    output_expires_s: int | None = None
    usage: dict[str, Any] | None = None


class OpenAIEngine(Engine):
    def __init__(self, *args: Any, options: OpenAIOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options or OpenAIOptions()
        self.extras: dict[str, BatchExtra] = {}

    def new_batch(
        self,
        *,
        input_file: FileRecord,
        endpoint: str,
        metadata: dict[str, str] | None,
        api_key: str,
        output_expires_s: int | None,
    ) -> JobRecord:
        self._seq += 1
        rng = self._jitter_rng(self._seq)
        jitter = self.config.processing.jitter
        queue_factor = 1 + jitter * (2 * rng.random() - 1)
        run_factor = 1 + jitter * (2 * rng.random() - 1)
        job = JobRecord(
            id="batch_" + self._ids.new().replace("-", ""),
            seq=self._seq,
            created_at=self.clock.now(),
            endpoint=endpoint,
            model=None,
            agent_id=None,
            metadata=metadata,
            input_files=[input_file.id],
            inline=False,
            timeout_hours=24,
            owner=owner_of(api_key),
            sources=[(input_file.id, input_file.path)],
            queue_s=self.config.processing.queue_s * queue_factor,
            run_factor=run_factor,
        )
        self.extras.setdefault(job.id, BatchExtra(input_file.id, output_expires_s))
        self.files.pin(job.input_files)
        self.jobs[job.id] = job
        self._spawn(self._scan(job))
        self._schedule(job)
        return job

    def new_file_id(self) -> str:
        return _file_id(self._ids.new())

    def batch_extra(self, job: JobRecord) -> BatchExtra:
        return self.extras[job.id]

    def to_wire(self, job: JobRecord) -> dict[str, Any]:
        extra = self.extras[job.id]
        return batch_to_wire(job, self.clock.now(), extra.input_file_id, extra.usage)

    # ---------------------------------------------------------------- validation
    async def _scan(self, job: JobRecord) -> None:
        path = job.sources[0][1]
        limit = self.options.max_requests_per_batch

        def work() -> BatchScan:
            return scan_batch(path, job.endpoint, max_requests=limit, cancel=self._stop)

        started = time.monotonic()
        try:
            result = await self._in_thread(work)
        except Cancelled:
            return
        except (OSError, ValueError, RecursionError) as exc:
            result = BatchScan(errors=[_error("invalid_file", f"Could not read the input: {exc}")])
        job.model = result.model
        if not result.errors:
            self._check_enqueued(job, result)
        job.scan = result
        job.scan_done_at = job.created_at + self.clock.scaled(time.monotonic() - started)
        self.refresh(job)

    def _check_enqueued(self, job: JobRecord, result: BatchScan) -> None:
        limit = self.options.enqueued_token_limit
        if limit is None:
            return
        queued = sum(
            other.scan.tokens
            for other in self.jobs.values()
            if other is not job
            and _open(other)
            and isinstance(other.scan, BatchScan)
            and other.owner == job.owner
            and other.model == job.model
        )
        if queued + result.tokens > limit:
            message = (
                f"Enqueued token limit reached for {job.model} in organization org-emulator. "
                f"Limit: {limit:,} enqueued tokens. Please try submitting your requests again "
                "later."
            )
            result.errors = [_error("token_limit_exceeded", message)]

    # ---------------------------------------------------------------- results
    def _finalize(self, job: JobRecord) -> None:
        job.finalizing = True
        job.finalize_started = time.monotonic()
        scan = job.scan
        if scan is None or scan.errors or scan.n_requests == 0:
            self._complete(job, None, None)
            return
        assert job.end is not None
        self._spawn(self._write_results(job, job.end))

    async def _write_results(self, job: JobRecord, end: End) -> None:
        out_id, err_id = self.new_file_id(), self.new_file_id()
        plan, counted = self._plan(job, end, out_id, err_id)
        try:
            outcome = await self._in_thread(generate, plan, self._stop)
        except Cancelled:
            return
        except Exception as exc:  # a disk error, or a bug: the batch fails, the engine goes on
            log.exception("emulator.results_failed", job_id=job.id, error=str(exc))
            job.errors = [_error("server_error", "Internal error while writing the results")]
            job.end = End(JobStatus.FAILED, end.at, end.done)
            outcome = Outcome()
        job.counted = counted
        self.batch_extra(job).usage = outcome.usage()
        out = self._register(job, out_id, outcome.out, "output")
        err = self._register(job, err_id, outcome.err, "error")
        self._complete(job, out, err)

    def _plan(self, job: JobRecord, end: End, out_id: str, err_id: str) -> tuple[Plan, int | None]:
        written, counted = end.done, None
        rule = self.faults.decide_results(job.endpoint)
        if rule is not None:
            share = int(end.done * rule.fraction)
            if rule.kind is FaultKind.SHORT_RESULTS:
                written = share
            else:
                counted = share
            log.info("emulator.fault_injected", kind=rule.kind.value, job_id=job.id)
        plan = Plan(
            endpoint=job.endpoint,
            source=job.sources[0][1],
            done=end.done,
            written=written,
            unprocessed=UNPROCESSED.get(end.kind),
            out_path=self.files.new_path(out_id),
            err_path=self.files.new_path(err_id),
        )
        return plan, counted

    def _register(
        self, job: JobRecord, file_id: str, written: Written, kind: str
    ) -> FileRecord | None:
        path = self.files.new_path(file_id)
        if job.deleted or written.lines == 0:
            path.unlink(missing_ok=True)
            return None
        now = int(self.clock.now())
        expires_s = self.batch_extra(job).output_expires_s
        record = FileRecord(
            id=file_id,
            filename=f"{job.id}_{kind}.jsonl",
            size_bytes=written.size_bytes,
            created_at=now,
            purpose="batch_output",
            sample_type="batch_result" if kind == "output" else "batch_error",
            source="openai",
            path=path,
            num_lines=written.lines,
            mimetype="application/jsonl",
            expires_at=None if expires_s is None else now + expires_s,
        )
        return self.files.add(record)


def _open(job: JobRecord) -> bool:
    """Still holding enqueued tokens: validated and not ended."""
    return not job.ready and job.scan is not None and not job.scan.errors


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "line": None, "message": message, "param": None}


def _file_id(raw: str) -> str:
    return "file-" + raw.replace("-", "")[:22]
