"""What a run measures: sizes, repetitions and timings, full or ``--quick``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    quick: bool
    runs: int  # repetitions of every measured figure
    latency_s: float  # per-request latency the emulator injects (intake, end to end)
    # intake
    intake_files: int
    intake_lines: int
    script_parallel: bool  # the script's runs side by side (each its own sequential process)
    # tracking and scale
    fleets: tuple[tuple[int, float], ...]  # (open jobs, minimum window s); the largest: scale
    completions_per_s: float  # each fleet's completion rate: jobs end uniformly over n / rate s
    tracking_speed: float  # emulator speed while tracking (resolution of completed_at)
    calibrate_s: float  # the daemon alone, before the tuned poller starts (first fleet)
    windows: int  # measurement windows per fleet (the "runs" of tracking)
    # download
    download_bytes: int
    download_runs: int  # interleaved runs of every variant (the bare figure swings 2x)
    # end to end
    e2e_lines: int
    e2e_speed: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan(
    quick=False,
    runs=3,
    latency_s=0.05,
    intake_files=1000,
    intake_lines=100,
    script_parallel=True,
    fleets=((1000, 90.0), (10_000, 30.0)),
    completions_per_s=0.5,
    tracking_speed=20.0,
    calibrate_s=45.0,
    windows=3,
    download_bytes=1024 * MIB,
    download_runs=5,
    e2e_lines=100,
    e2e_speed=60.0,
)

QUICK = Plan(
    quick=True,
    runs=1,
    latency_s=0.05,
    intake_files=100,
    intake_lines=100,
    script_parallel=True,
    fleets=((1000, 15.0),),
    completions_per_s=1.0,
    tracking_speed=20.0,
    calibrate_s=15.0,
    windows=1,
    download_bytes=64 * MIB,
    download_runs=1,
    e2e_lines=100,
    e2e_speed=60.0,
)


@dataclass(frozen=True)
class Context:
    plan: Plan
    work: Path  # scratch space, removed at the end unless --keep

    def folder(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
