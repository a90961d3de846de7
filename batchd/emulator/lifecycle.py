"""A batch job's record and the pure rules that read its state at an emulated time.

Nothing here runs on a timer. A job stores a few materialised facts (when it started, how it
will end, whether its files exist); its status and counters at any time ``t`` are computed from
them on read. That keeps 10,000 jobs and a million requests cheap: no task per job or request.

Status: QUEUED until started; RUNNING (or CANCELLATION_REQUESTED once cancelled) until the
result files exist; then the end kind (SUCCESS, FAILED, TIMEOUT_EXCEEDED, CANCELLED).
Counters: ``total_requests`` is 0 until the job starts; ``completed_requests`` grows linearly
from ``started_at`` over ``run_s`` and freezes at the end's ``done`` (the timeout or the cancel).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchd.emulator.config import ProcessingModel
from batchd.emulator.scan import ScanResult, Source
from batchd.emulator.validation import JobStatus

TERMINAL = frozenset(
    {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.TIMEOUT_EXCEEDED, JobStatus.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class End:
    kind: JobStatus
    at: float  # emulated time at which processing stops
    done: int  # requests processed by then


@dataclass(slots=True)
class JobRecord:
    id: str
    seq: int
    created_at: float
    endpoint: str
    model: str | None
    agent_id: str | None
    metadata: dict[str, str] | None
    input_files: list[str]
    inline: bool
    timeout_hours: int
    owner: str
    sources: list[Source]
    queue_s: float
    run_factor: float
    inline_path: Path | None = None
    scan: ScanResult | None = None
    scan_done_at: float | None = None
    started_at: float | None = None
    run_s: float = 0.0
    cancel_at: float | None = None
    end: End | None = None
    finalizing: bool = False
    finalize_started: float = 0.0  # time.monotonic() when the result files started
    ready: bool = False
    completed_at: float | None = None
    output_file: str | None = None
    error_file: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    pinned: bool = True
    deleted: bool = False
    next_due: float | None = None
    counted: int | None = None  # a short_counts fault: what the finished job's counters show

    @property
    def deadline(self) -> float:
        return self.created_at + self.timeout_hours * 3600.0


def status(job: JobRecord) -> JobStatus:
    if job.ready and job.end is not None:
        return job.end.kind
    if job.cancel_at is not None:
        return JobStatus.CANCELLATION_REQUESTED
    if job.started_at is not None:
        return JobStatus.RUNNING
    return JobStatus.QUEUED


def run_seconds(n_requests: int, model: ProcessingModel, factor: float) -> float:
    waves = math.ceil(n_requests / model.parallelism)
    return max(model.min_run_s, waves * model.request_s) * factor


def progress(job: JobRecord, t: float) -> int:
    """Requests processed by time ``t`` if nothing stopped the job."""
    if job.started_at is None or job.scan is None:
        return 0
    n = job.scan.n_requests
    if job.run_s <= 0 or t >= job.started_at + job.run_s:
        return n
    return max(0, math.floor(n * (t - job.started_at) / job.run_s))


def start_time(job: JobRecord) -> float | None:
    """When validation is over: after ``queue_s`` and once the input has been scanned."""
    if job.scan is None or job.scan_done_at is None:
        return None
    return max(job.created_at + job.queue_s, job.scan_done_at)


def planned_end(job: JobRecord) -> End:
    """The end of a job that has just started: success, or the timeout if it comes first."""
    assert job.started_at is not None
    assert job.scan is not None
    finish = job.started_at + job.run_s
    if job.deadline < finish:
        return End(JobStatus.TIMEOUT_EXCEEDED, job.deadline, progress(job, job.deadline))
    return End(JobStatus.SUCCESS, finish, job.scan.n_requests)


def finish_due(job: JobRecord, model: ProcessingModel) -> float:
    """When the result files start being written."""
    assert job.end is not None
    writes_late = job.end.kind in {JobStatus.SUCCESS, JobStatus.TIMEOUT_EXCEEDED}
    return job.end.at + (model.finalize_s if writes_late else 0.0)


def counters(job: JobRecord, t: float) -> dict[str, int]:
    if job.started_at is None or job.scan is None:
        return {
            "total_requests": 0,
            "completed_requests": 0,
            "succeeded_requests": 0,
            "failed_requests": 0,
        }
    done = progress(job, t)
    if job.end is not None:
        done = min(done, job.end.done)
    if job.counted is not None:
        done = min(done, job.counted)
    failed = bisect.bisect_left(job.scan.failed, done)
    return {
        "total_requests": job.scan.n_requests,
        "completed_requests": done,
        "succeeded_requests": done - failed,
        "failed_requests": failed,
    }


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def to_wire(job: JobRecord, t: float, outputs: list[Any] | None = None) -> dict[str, Any]:
    """The ``BatchJob`` object as GET returns it at emulated time ``t``."""
    return {
        "id": job.id,
        "object": "batch",
        "input_files": list(job.input_files),
        "metadata": job.metadata,
        "endpoint": job.endpoint,
        "model": job.model,
        "agent_id": job.agent_id,
        "output_file": job.output_file,
        "error_file": job.error_file,
        "errors": list(job.errors),
        "outputs": outputs,
        "status": status(job).value,
        "created_at": int(job.created_at),
        **counters(job, t),
        "started_at": _int_or_none(job.started_at),
        "completed_at": _int_or_none(job.completed_at) if job.ready else None,
    }
