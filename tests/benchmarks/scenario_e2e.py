"""Scenario 5, end to end: one small batch from drop to results on disk.

One emulator at ``e2e_speed`` with the same per-request latency as intake and a small job's
processing model (validation ~30 s, running ~60 s, finalizing 10 s, in emulated seconds). The
script polls every 60 emulated seconds; the daemon's poll timers are divided by the same speed.
Each run reports the total, the emulator's own processing time (``completed_at -
created_at``, in real seconds) and the rest: the client's overhead, split into
drop->created, completion->noticed and noticed->results on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.benchmarks import batchd_db
from tests.benchmarks.configs import BULK_LOAD, BatchdSetup, describe, scaled_timers, write_config
from tests.benchmarks.inputs import write_batch_files
from tests.benchmarks.plan import Context
from tests.benchmarks.procs import API_KEY, ClockMap, Daemon, Emulator, child_env, sdk_script
from tests.benchmarks.stats import ratio, summary

PROCESSING = {"queue_s": 30.0, "min_run_s": 60.0, "finalize_s": 10.0, "jitter": 0.25}
TIMEOUT_S = 120.0


def _job(emu: Emulator, job_id: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{emu.url}/v1/batch/jobs/{job_id}")
    request.add_header("Authorization", f"Bearer {API_KEY}")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _breakdown(
    emu: Emulator, clock: ClockMap, job_id: str, t0: float, times: dict[str, float]
) -> dict[str, float]:
    """``times``: created, noticed, done (wall clock)."""
    job = _job(emu, job_id)
    half_tick = 0.5 / clock.speed
    completed = clock.wall(float(job["completed_at"])) + half_tick
    processing = (float(job["completed_at"]) - float(job["created_at"])) / clock.speed
    total = times["done"] - t0
    return {
        "total_s": total,
        "processing_s": processing,
        "overhead_s": total - processing,
        "drop_to_created_s": times["created"] - t0,
        "completion_to_noticed_s": times["noticed"] - completed,
        "noticed_to_on_disk_s": times["done"] - times["noticed"],
    }


def _wait_finished(database: Path, name: str) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    while (done := batchd_db.finished(database).get(name)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"batchd did not finish {name}")
        time.sleep(0.01)
    return done


def batchd_runs(ctx: Context, emu: Emulator, clock: ClockMap) -> list[dict[str, float]]:
    plan = ctx.plan
    overrides = BULK_LOAD + scaled_timers(plan.e2e_speed)
    setup = BatchdSetup(ctx.folder("e2e", "batchd"), emu.url, overrides)
    write_config(setup)
    stage = write_batch_files(setup.root / "stage", "e2e", plan.runs, plan.e2e_lines)
    daemon = Daemon(setup.config_path, setup.log_path)
    daemon.start()
    results = []
    try:
        for path in stage:
            t0 = time.time()
            os.rename(path, setup.spool / "inbox" / path.name)
            done = _wait_finished(setup.database, path.name)
            job_id = batchd_db.provider_job_ids(setup.database)[path.name]
            created = batchd_db.created_times(setup.database)[path.name]
            noticed = batchd_db.terminal_times(setup.database)[job_id]
            times = {"created": created, "noticed": noticed, "done": done}
            results.append(_breakdown(emu, clock, job_id, t0, times))
    finally:
        daemon.stop()
    return results


def script_runs(ctx: Context, emu: Emulator, clock: ClockMap) -> list[dict[str, float]]:
    plan = ctx.plan
    results = []
    for run in range(plan.runs):
        root = ctx.folder("e2e", f"script-{run}")
        write_batch_files(root / "inbox", f"e2e-s{run}", 1, plan.e2e_lines)
        out, results_dir = root / "times.json", ctx.folder("e2e", f"script-{run}", "results")
        subprocess.run(
            sdk_script(
                emu.url,
                root / "inbox",
                out,
                "--results",
                str(results_dir),
                "--speed",
                f"{plan.e2e_speed:g}",
            ),
            env=child_env(),
            cwd=root,
            check=True,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        timings = json.loads(out.read_text())
        name = next(iter(timings["created"]))
        times = {
            "created": timings["created"][name],
            "noticed": timings["terminal_seen"][name],
            "done": timings["finished"][name],
        }
        results.append(_breakdown(emu, clock, timings["job_ids"][name], timings["started"], times))
    return results


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    emu = Emulator.start(
        ctx.folder("e2e") / "emulator.log",
        speed=plan.e2e_speed,
        faults=(f"latency:1,delay={plan.latency_s}",),
        processing=PROCESSING,
    )
    try:
        clock = emu.clock()
        batchd = batchd_runs(ctx, emu, clock)
        script = script_runs(ctx, emu, clock)
    finally:
        emu.stop()
    keys = list(batchd[0])
    result: dict[str, Any] = {
        "batchd": {k: summary([r[k] for r in batchd]) for k in keys},
        "script": {k: summary([r[k] for r in script]) for k in keys},
        "runs": {"batchd": batchd, "script": script},
        "settings": {
            "lines": plan.e2e_lines,
            "latency_s": plan.latency_s,
            "emulator": emu.args,
            "batchd_overrides": describe(BULK_LOAD + scaled_timers(plan.e2e_speed)),
        },
    }
    result["overhead_ratio"] = ratio(
        result["script"]["overhead_s"]["median"], result["batchd"]["overhead_s"]["median"]
    )
    return result
