"""Configuration of the emulator: who may call it, how fast time runs, how long jobs take, and
the documented choices for behaviours the reference marks unverified."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from batchd.emulator.faults import FaultConfig

MIB = 1024 * 1024
MAX_SPEED = 1_000_000.0  # as [providers.*] emulator_speed
MAX_DURATION_S = 3_153_600_000.0  # 100 years, as POST /_emulator/advance


@dataclass(frozen=True)
class ProcessingModel:
    """How long a job takes, in emulated seconds.

    A job stays QUEUED for ``queue_s`` (validation; ``total_requests`` is 0), then RUNNING for
    ``max(min_run_s, ceil(n / parallelism) * request_s)``, then ``finalize_s`` more with its
    counters complete while the result files are written. Both durations are multiplied by a
    seeded per-job factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` so that many jobs end
    at different times. A cancelled job stays CANCELLATION_REQUESTED for ``cancel_s``.
    """

    queue_s: float = 5.0
    request_s: float = 1.0
    parallelism: int = 50
    min_run_s: float = 5.0
    finalize_s: float = 2.0
    cancel_s: float = 3.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ("queue_s", "request_s", "min_run_s", "finalize_s", "cancel_s"):
            if not 0 <= getattr(self, name) <= MAX_DURATION_S:  # NaN fails this too
                raise ValueError(f"{name} must be >= 0 and <= {MAX_DURATION_S:.0f}")
        if self.parallelism < 1:
            raise ValueError("parallelism must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


@dataclass(frozen=True)
class Behaviour:
    """Choices where the real API is unverified, and output shapes (see the package docstring)."""

    error_field: Literal["object", "string"] = "object"  # per-request error lines: `error` shape
    cancel_terminal: Literal["ok", "error"] = "ok"  # cancel of a terminal job: 200 as is, or 400
    delete_active: Literal["allow", "reject"] = "allow"  # DELETE of a non-terminal job
    metadata_filter: Literal["honour", "ignore"] = "honour"  # jobs list: apply metadata or not
    invalid_id_status: int = 422  # a path id that is not a UUID: 422 (FastAPI) or 404
    missing_input_status: int = 404  # create naming an unknown input file: 404, 400 or 422
    stable_created: bool = True  # response bodies carry a fixed `created` (byte-for-byte output)
    default_max_tokens: int = 16  # completion length when a request sets no max_tokens
    embedding_dim: int = 1024
    max_upload_bytes: int = 512 * MIB
    max_requests_per_job: int = 1_000_000
    max_inline_outputs: int = 10_000  # GET ?inline=true returns at most this many lines
    outputs: Literal["fill", "null"] = "fill"  # "null": `outputs` stays null when terminal

    def __post_init__(self) -> None:
        if self.invalid_id_status not in {404, 422}:
            raise ValueError("invalid_id_status must be 404 or 422")
        if self.missing_input_status not in {400, 404, 422}:
            raise ValueError("missing_input_status must be 400, 404 or 422")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything ``serve()`` needs. Immutable; faults can still change at run time.

    ``api_keys`` empty means any non-empty Bearer key is accepted (a missing or empty
    Authorization header is still 401). ``speed`` is emulated seconds per real second.
    ``seed`` makes ids, job-duration jitter and faults reproducible. ``data_dir`` holds file
    contents (default: a temporary directory removed when the server stops).
    """

    api_keys: tuple[str, ...] = ()
    speed: float = 1.0
    seed: int | None = None
    data_dir: Path | None = None
    processing: ProcessingModel = field(default_factory=ProcessingModel)
    behaviour: Behaviour = field(default_factory=Behaviour)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and 0 < self.speed <= MAX_SPEED):
            raise ValueError(f"speed must be > 0 and <= {MAX_SPEED:.0f} (got {self.speed:g})")
