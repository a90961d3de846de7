"""Scenarios 2 and 4: tracking cost at 1,000 and 10,000 open jobs, and the daemon at scale.

Per fleet size, two twin emulator processes (same arguments, same seed) hold one fleet of ``n``
jobs each, created alternately: one tracked by the daemon (default settings), one by the tuned
per-job poller (official SDK, async); each side's calls are counted by its own emulator. Every
job completes at a uniformly random time between ``idle_s`` and ``idle_s + n /
completions_per_s`` after its creation (the emulator's queue time with a wide jitter): both sizes
finish jobs at the same rate, as steady fleets whose jobs live ``n / completions_per_s`` on
average (about 33 min for 1,000 and 5.6 h for 10,000 at 0.5/s).

Scale (the large fleet only, while no job has completed yet): cold start and restarts, each timed
from exec to ``READY=1``; CPU % of one core over whole sweep cycles; RSS.

Tracking: the daemon runs alone for ``calibrate_s`` (its p95 sets the poller's first T), then the
poller starts; T is re-tuned to the daemon's pooled p95 every window. Calls are counted in
windows of whole sweep cycles; after the last window both keep running for a grace period so
that every completion in the windows is detected. See ``tracking_analysis`` for definitions.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.benchmarks import batchd_db
from tests.benchmarks.configs import BatchdSetup, write_config
from tests.benchmarks.plan import Context, Plan
from tests.benchmarks.procs import ClockMap, Daemon, Emulator, child_env, python_module
from tests.benchmarks.sampler import Sampler, wait_for_sweeps
from tests.benchmarks.seed import Seeded, seed_fleets
from tests.benchmarks.stats import percentile, summary
from tests.benchmarks.tracking_analysis import Detections, Side, combine, window_metrics, windows

MIN_TUNING_SAMPLES = 10


@dataclass
class Fleet:
    n: int
    root: Path
    emu: Emulator  # the daemon's
    poller_emu: Emulator  # its twin, for the tuned poller
    setup: BatchdSetup
    clock: ClockMap
    seeded: Seeded
    onset: float  # wall time from which jobs complete
    daemon: Daemon | None = None


def horizon_s(plan: Plan, n: int) -> float:
    return n / plan.completions_per_s


def processing_for(plan: Plan, n: int, idle_s: float) -> dict[str, float]:
    """Queue time uniform in [idle_s, idle_s + horizon] (real seconds), nothing else."""
    half = horizon_s(plan, n) / 2
    mid = idle_s + half
    return {
        "queue_s": round(mid * plan.tracking_speed, 3),
        "jitter": round(half / mid, 6),
        "request_s": 0.001,
        "parallelism": 1,
        "min_run_s": 0.0,
        "finalize_s": 0.0,
    }


def _daemon_raw(fleet: Fleet) -> dict[str, tuple[float, float | None]]:
    return batchd_db.terminal_records(fleet.setup.database)


def _daemon_p95(fleet: Fleet, since: float) -> float | None:
    detections = Detections.build(_daemon_raw(fleet), fleet.clock)
    latencies = detections.latencies(since, time.time())
    return percentile(latencies, 95) if len(latencies) >= MIN_TUNING_SAMPLES else None


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


# ---------------------------------------------------------------------- scale phase
def _restart(fleet: Fleet) -> dict[str, float]:
    assert fleet.daemon is not None
    shutdown = fleet.daemon.stop()
    ready = fleet.daemon.start()
    return {"shutdown_s": shutdown, "ready_s": ready}


def scale_phase(fleet: Fleet, sampler: Sampler, runs: int) -> dict[str, Any]:
    pages = math.ceil(fleet.n / 100)
    deadline = time.monotonic() + 600
    while not sampler.samples or sampler.samples[-1].lists < pages:  # the first sweep is over
        if time.monotonic() > deadline:
            raise TimeoutError("the first sweep did not finish")
        time.sleep(0.2)
    restarts = [_restart(fleet) for _ in range(runs)]
    after = time.time()
    starts = wait_for_sweeps(sampler, runs + 1, since=after, timeout_s=120 * (runs + 1))
    cycles = []
    for begin, end in itertools.pairwise(starts):
        first, last = sampler.at(begin), sampler.at(end)
        assert first.cpu_s is not None and last.cpu_s is not None
        cycles.append(
            {
                "seconds": last.t - first.t,
                "cpu_percent_of_core": 100 * (last.cpu_s - first.cpu_s) / (last.t - first.t),
                "rss_bytes": sampler.max_rss(begin, end),
            }
        )
    return {
        "open_jobs": fleet.n,
        "restarts": restarts,
        "idle_cycles": cycles,
        "idle_phase_end": starts[-1],
        "overlapped_completions": starts[-1] > fleet.onset,
        "restart_ready_s": summary([r["ready_s"] for r in restarts]),
        "shutdown_s": summary([r["shutdown_s"] for r in restarts]),
        "idle_cpu_percent_of_core": summary([c["cpu_percent_of_core"] for c in cycles]),
        "idle_rss_bytes": summary([c["rss_bytes"] for c in cycles]),
        "sweep_cycle_s": summary([c["seconds"] for c in cycles]),
    }


# ---------------------------------------------------------------------- tracking phase
def _start_poller(fleet: Fleet, interval_s: float) -> tuple[subprocess.Popen[bytes], Path, Path]:
    folder = fleet.root / "poller"
    folder.mkdir(exist_ok=True)
    ids, control, out = folder / "ids.json", folder / "interval.txt", folder / "out.json"
    ids.write_text(json.dumps(fleet.seeded.poller_jobs))
    control.write_text(f"{interval_s:.3f}")
    proc = subprocess.Popen(
        python_module(
            "tests.benchmarks.poller",
            "--server",
            fleet.poller_emu.url,
            "--ids",
            str(ids),
            "--interval-file",
            str(control),
            "--out",
            str(out),
        ),
        env=child_env(),
        cwd=folder,
        stdout=(folder / "poller.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, control, out


def _first_interval(fleet: Fleet, sampler: Sampler, plan: Plan) -> float:
    p95 = _daemon_p95(fleet, fleet.onset)
    if p95 is not None:
        return p95 / 0.95
    starts = sampler.sweep_starts()
    cycle = (starts[-1] - starts[-2]) if len(starts) >= 2 else 5.0
    return 1.5 * cycle


def tracking_phase(
    fleet: Fleet,
    sampler: Sampler,
    poller_counts: Sampler,
    plan: Plan,
    *,
    calibrate_s: float,
    window_s: float,
) -> dict[str, Any]:
    _sleep_until(fleet.onset + calibrate_s)
    interval = _first_interval(fleet, sampler, plan)
    proc, control, out = _start_poller(fleet, interval)
    poller_start = time.time()
    tuned = [(poller_start, interval)]
    while True:
        time.sleep(window_s / 2)
        p95 = _daemon_p95(fleet, fleet.onset)
        if p95 is not None and abs(p95 / 0.95 - interval) > 0.02 * interval:
            interval = p95 / 0.95
            control.write_text(f"{interval:.3f}")
            tuned.append((time.time(), interval))
        found = windows(
            sampler.sweep_starts(),
            after=poller_start,
            before=time.time(),
            min_s=window_s,
            count=plan.windows,
        )
        if len(found) == plan.windows:
            break
    grace_from = time.time()
    _sleep_until(grace_from + 1.2 * max(interval, p95 or interval) + 5)
    proc.terminate()
    proc.wait(timeout=60)
    assert fleet.daemon is not None
    fleet.daemon.stop()
    poller = json.loads(out.read_text())
    daemon_side = Side(fleet.seeded.daemon_jobs, Detections.build(_daemon_raw(fleet), fleet.clock))
    raw_poller = {job: (t, c) for job, (t, c) in poller["detected"].items()}
    poller_side = Side(fleet.seeded.poller_jobs, Detections.build(raw_poller, fleet.clock))
    per_window = [
        window_metrics(w, sampler, poller_counts, daemon_side, poller_side) for w in found
    ]
    result = combine(per_window, daemon_side, poller_side)
    result.update(
        {
            "open_jobs": fleet.n,
            "per_window": per_window,
            "poller_intervals": tuned,
            "poller_errors": poller["errors"],
            "calibrate_s": calibrate_s,
        }
    )
    return result


# ---------------------------------------------------------------------- one fleet
def run_fleet(
    ctx: Context, n: int, *, window_s: float, idle_s: float, calibrate_s: float, scale: bool
) -> dict[str, Any]:
    plan = ctx.plan
    root = ctx.folder("tracking", f"fleet-{n}")
    processing = processing_for(plan, n, idle_s)
    speed = plan.tracking_speed
    emu = Emulator.start(root / "emulator.log", speed=speed, processing=processing)
    twin = Emulator.start(root / "emulator-poller.log", speed=speed, processing=processing)
    fleet: Fleet | None = None
    sampler = Sampler(emu, lambda: fleet.daemon if fleet is not None else None)
    poller_counts = Sampler(twin, lambda: None)
    try:
        setup = BatchdSetup(root / "batchd", emu.url)
        write_config(setup)
        created_from = time.time()
        seeded = seed_fleets(setup, emu.url, twin.url, n, n, tag=str(n))
        clock = emu.clock()
        fleet = Fleet(n, root, emu, twin, setup, clock, seeded, onset=created_from + idle_s)
        fleet.daemon = Daemon(setup.config_path, setup.log_path)
        cold_ready_s = fleet.daemon.start()
        sampler.start()
        poller_counts.start()
        scaled = scale_phase(fleet, sampler, plan.runs) if scale else None
        tracked = tracking_phase(
            fleet, sampler, poller_counts, plan, calibrate_s=calibrate_s, window_s=window_s
        )
        max_rss = sampler.max_rss(0, time.time())
    finally:
        sampler.stop()
        poller_counts.stop()
        if fleet is not None and fleet.daemon is not None:
            fleet.daemon.stop()
        emu.stop()
        twin.stop()
    return {
        "open_jobs": n,
        "seed_s": seeded.seconds,
        "cold_start_ready_s": cold_ready_s,
        "max_rss_bytes": max_rss,
        "scale": scaled,
        "tracking": tracked,
        "emulator": emu.args,
        "emulators": "twins: one per side, same arguments and seed",
        "idle_s": idle_s,
        "horizon_s": horizon_s(plan, n),
    }


def idle_for(n: int, runs: int, scale: bool) -> float:
    """How long the fleet must stay idle: daemon start and first sweep, then (for the scale
    fleet) the restarts and ``runs + 1`` sweep starts at the default 5 req/s budget."""
    pages = math.ceil(n / 100)
    first_sweep_s = pages / 5.0 + 15.0
    if not scale:
        return first_sweep_s + 15.0
    cycle_s = max(5.0, pages / 2.5)
    return first_sweep_s + runs * 4.0 + (runs + 1.2) * cycle_s + 10.0


def run(ctx: Context) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    plan = ctx.plan
    biggest = max(n for n, _ in plan.fleets)
    with ThreadPoolExecutor(len(plan.fleets)) as pool:
        futures = {
            n: pool.submit(
                run_fleet,
                ctx,
                n,
                window_s=window_s,
                idle_s=idle_for(n, plan.runs, n == biggest),
                calibrate_s=0.0 if n == biggest else plan.calibrate_s,
                scale=n == biggest,
            )
            for n, window_s in plan.fleets
        }
        fleets = {str(n): future.result() for n, future in futures.items()}
    return {
        "fleets": fleets,
        "scale": fleets[str(biggest)]["scale"],
        "settings": {
            "completions_per_s": plan.completions_per_s,
            "emulator_speed": plan.tracking_speed,
            "window_s": dict(plan.fleets),
            "windows": plan.windows,
            "batchd_overrides": [],
        },
    }
