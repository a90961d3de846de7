"""The pure lifecycle rules: status and counters read from a job record at a time."""

from __future__ import annotations

from typing import Any

from batchd.emulator.config import ProcessingModel
from batchd.emulator.lifecycle import (
    End,
    JobRecord,
    counters,
    finish_due,
    planned_end,
    progress,
    run_seconds,
    start_time,
    status,
    to_wire,
)
from batchd.emulator.scan import ScanResult
from batchd.emulator.validation import JobStatus

T0 = 1_000_000.0


def record(**changes: Any) -> JobRecord:
    base: dict[str, Any] = {
        "id": "j",
        "seq": 1,
        "created_at": T0,
        "endpoint": "/v1/embeddings",
        "model": "m",
        "agent_id": None,
        "metadata": None,
        "input_files": [],
        "inline": True,
        "timeout_hours": 1,
        "owner": "o",
        "sources": [],
        "queue_s": 10.0,
        "run_factor": 1.0,
    }
    return JobRecord(**{**base, **changes})


def started(n: int = 10, failed: list[int] | None = None, run_s: float = 100.0) -> JobRecord:
    job = record(scan=ScanResult(n, failed or []), scan_done_at=T0 + 1)
    job.started_at = T0 + 10
    job.run_s = run_s
    job.end = planned_end(job)
    return job


def test_run_seconds() -> None:
    model = ProcessingModel(request_s=2, parallelism=10, min_run_s=5)
    assert run_seconds(1, model, 1.0) == 5  # the floor
    assert run_seconds(101, model, 1.0) == 22  # 11 waves of 2 s
    assert run_seconds(101, model, 1.5) == 33


def test_start_waits_for_the_queue_and_the_scan() -> None:
    assert start_time(record()) is None
    assert start_time(record(scan=ScanResult(3), scan_done_at=T0 + 2)) == T0 + 10
    assert start_time(record(scan=ScanResult(3), scan_done_at=T0 + 30)) == T0 + 30


def test_queued_job_reports_zero_counters() -> None:
    job = record(scan=ScanResult(10), scan_done_at=T0)
    assert status(job) is JobStatus.QUEUED
    assert counters(job, T0 + 1000) == {
        "total_requests": 0,
        "completed_requests": 0,
        "succeeded_requests": 0,
        "failed_requests": 0,
    }


def test_counters_advance_linearly_and_count_failures_in_order() -> None:
    job = started(failed=[1, 7])
    assert status(job) is JobStatus.RUNNING
    assert progress(job, T0 + 10) == 0
    assert counters(job, T0 + 40) == {
        "total_requests": 10,
        "completed_requests": 3,
        "succeeded_requests": 2,
        "failed_requests": 1,
    }
    assert counters(job, T0 + 500)["completed_requests"] == 10
    assert counters(job, T0 + 500)["failed_requests"] == 2


def test_the_deadline_cuts_the_job_short() -> None:
    job = started(run_s=7200)  # needs 2 h; the timeout is 1 h from creation
    assert job.end == End(JobStatus.TIMEOUT_EXCEEDED, T0 + 3600, 4)
    assert counters(job, T0 + 9999)["completed_requests"] == 4
    assert started().end == End(JobStatus.SUCCESS, T0 + 110, 10)


def test_cancel_freezes_the_counters() -> None:
    job = started()
    job.cancel_at = T0 + 40
    job.end = End(JobStatus.CANCELLED, T0 + 45, progress(job, T0 + 40))
    assert status(job) is JobStatus.CANCELLATION_REQUESTED
    assert counters(job, T0 + 90)["completed_requests"] == 3
    job.ready = True
    assert status(job) is JobStatus.CANCELLED


def test_finalisation_starts_after_finalize_s_for_success_and_timeout() -> None:
    model = ProcessingModel(finalize_s=7)
    assert finish_due(started(), model) == T0 + 117
    cancelled = started()
    cancelled.end = End(JobStatus.CANCELLED, T0 + 50, 4)
    assert finish_due(cancelled, model) == T0 + 50


def test_wire_shape_hides_completion_until_ready() -> None:
    job = started()
    job.completed_at = T0 + 120.7
    wire = to_wire(job, T0 + 60.2)
    assert wire["completed_at"] is None and wire["status"] == "RUNNING"
    assert wire["started_at"] == int(T0 + 10) and wire["created_at"] == int(T0)
    job.ready = True
    assert to_wire(job, T0 + 200)["completed_at"] == int(T0 + 120)
