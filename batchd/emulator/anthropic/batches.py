"""A message batch's record and the pure rules that read its state at an emulated time.

A batch is ``in_progress`` from its creation, ``canceling`` once a cancel arrived, and
``ended`` once its results file exists. Its end is planned when it is created (and replanned
by a cancel): ``End(kind, at, done)``, the emulated time processing stops and how many requests
were processed by then (in request order). The requests processed are ``succeeded`` or
``errored`` (params the Messages API refuses); the others are ``expired`` (the batch ran past
its 24 hours) or ``canceled``. Counts stay ``processing = n`` until the batch has ended, as the
real API does: there is no progress ratio to read.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from batchd.emulator.anthropic.wire import rfc3339
from batchd.emulator.config import ProcessingModel
from batchd.emulator.lifecycle import run_seconds

EXPIRY_S = 24 * 3600.0


class EndKind(StrEnum):
    DONE = "done"  # every request processed
    EXPIRED = "expired"  # 24 hours ran out first: the rest expired
    CANCELED = "canceled"  # a cancel arrived: the rest were canceled


@dataclass(frozen=True, slots=True)
class End:
    kind: EndKind
    at: float  # emulated time at which processing stops
    done: int  # requests processed by then


@dataclass(slots=True)
class BatchRecord:
    id: str
    seq: int
    owner: str
    created_at: float
    n_requests: int
    invalid: list[int]  # sorted indexes of requests whose params are refused (errored results)
    requests_path: Path
    start_at: float
    run_s: float
    end: End
    cancel_at: float | None = None
    writing: bool = False
    ready: bool = False
    ended_at: float | None = None
    results_path: Path | None = None
    deleted: bool = False
    next_due: float | None = None

    @property
    def expires_at(self) -> float:
        return self.created_at + EXPIRY_S


def plan(
    n_requests: int,
    created_at: float,
    model: ProcessingModel,
    queue_factor: float,
    run_factor: float,
) -> tuple[float, float, End]:
    """``(start_at, run_s, end)`` of a new batch."""
    start_at = created_at + model.queue_s * queue_factor
    run_s = run_seconds(n_requests, model, run_factor)
    expires_at = created_at + EXPIRY_S
    if start_at + run_s > expires_at:
        done = processed(n_requests, start_at, run_s, expires_at)
        return start_at, run_s, End(EndKind.EXPIRED, expires_at, done)
    return start_at, run_s, End(EndKind.DONE, start_at + run_s, n_requests)


def processed(n_requests: int, start_at: float, run_s: float, t: float) -> int:
    """Requests processed by time ``t`` (linear over the run) if nothing stopped the batch."""
    if t <= start_at:
        return 0
    if run_s <= 0 or t >= start_at + run_s:
        return n_requests
    return max(0, math.floor(n_requests * (t - start_at) / run_s))


def canceled_end(batch: BatchRecord, now: float, cancel_s: float) -> End | None:
    """The end after a cancel at ``now`` (``None``: too late, or already canceling)."""
    if batch.cancel_at is not None or batch.writing or batch.ready or now >= batch.end.at:
        return None
    done = min(processed(batch.n_requests, batch.start_at, batch.run_s, now), batch.end.done)
    return End(EndKind.CANCELED, now + cancel_s, done)


def processing_status(batch: BatchRecord) -> str:
    if batch.ready:
        return "ended"
    return "canceling" if batch.cancel_at is not None else "in_progress"


def counts(batch: BatchRecord) -> dict[str, int]:
    zero = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if not batch.ready:
        return {**zero, "processing": batch.n_requests}
    errored = bisect.bisect_left(batch.invalid, batch.end.done)
    rest = batch.n_requests - batch.end.done
    return {
        **zero,
        "succeeded": batch.end.done - errored,
        "errored": errored,
        "canceled": rest if batch.end.kind is EndKind.CANCELED else 0,
        "expired": rest if batch.end.kind is EndKind.EXPIRED else 0,
    }


def results_url(base_url: str, batch_id: str) -> str:
    return f"{base_url}/v1/messages/batches/{batch_id}/results"


def to_wire(batch: BatchRecord, base_url: str) -> dict[str, Any]:
    """The ``MessageBatch`` object (reference section 2.3)."""
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": processing_status(batch),
        "request_counts": counts(batch),
        "ended_at": rfc3339(batch.ended_at) if batch.ready else None,
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(batch.cancel_at),
        "results_url": results_url(base_url, batch.id) if batch.ready else None,
    }
