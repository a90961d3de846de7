"""Scenario 1, intake: files dropped at once, until every job is created at the provider.

batchd: its daemon is running and READY; the files are renamed into the inbox in one go (each
rename stamped); a file is "created" at its ``batch.created`` event. The script: the files are
in a folder when it starts; a file is created when ``jobs.create`` returns. Both against one
emulator process that adds ``latency_s`` to every request and never finishes a job during the
scenario (jobs stay QUEUED).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.benchmarks import batchd_db
from tests.benchmarks.configs import BULK_LOAD, BatchdSetup, describe, write_config
from tests.benchmarks.inputs import write_batch_files
from tests.benchmarks.plan import Context
from tests.benchmarks.procs import Daemon, Emulator, child_env, sdk_script
from tests.benchmarks.stats import percentile, ratio, summary

INTAKE_TIMEOUT_S = 900.0


def _run_metrics(
    drop: dict[str, float], created: dict[str, float], t0: float, calls: int
) -> dict[str, Any]:
    latencies = [created[name] - drop[name] for name in drop if name in created]
    last = max(created.values()) if created else None
    elapsed = None if last is None else last - t0
    return {
        "files": len(drop),
        "created": len(created),
        "elapsed_s": elapsed,
        "files_per_s": ratio(len(created), elapsed),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "calls": calls,
        "calls_per_file": ratio(calls, len(drop)),
    }


def _wait_created(database: Path, count: int, daemon: Daemon) -> None:
    deadline = time.monotonic() + INTAKE_TIMEOUT_S
    while batchd_db.created_count(database) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"batchd created {batchd_db.created_count(database)} of {count}")
        assert daemon.proc is not None
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"batchd exited with {daemon.proc.returncode}")
        time.sleep(0.02)


def batchd_run(ctx: Context, emu: Emulator, run: int) -> dict[str, Any]:
    plan = ctx.plan
    setup = BatchdSetup(ctx.folder("intake", f"batchd-{run}"), emu.url, BULK_LOAD)
    write_config(setup)
    stage = write_batch_files(setup.root / "stage", f"b{run}", plan.intake_files, plan.intake_lines)
    daemon = Daemon(setup.config_path, setup.log_path)
    daemon.start()
    try:
        inbox = setup.spool / "inbox"
        emu.reset_stats()
        cpu_before = daemon.cpu_times()
        drop: dict[str, float] = {}
        for path in stage:
            drop[path.name] = time.time()
            os.rename(path, inbox / path.name)
        t0 = min(drop.values())
        _wait_created(setup.database, plan.intake_files, daemon)
        wall = time.time() - t0
        cpu_after = daemon.cpu_times()
        rss = daemon.rss_bytes()
        calls = emu.stats()["total"]
        created = batchd_db.created_times(setup.database)
    finally:
        daemon.stop()
    metrics = _run_metrics(drop, created, t0, calls)
    user, system = (cpu_after[i] - cpu_before[i] for i in range(2))
    cpu = user + system
    lines = plan.intake_files * plan.intake_lines
    metrics.update(
        {
            "cpu_percent_of_core": 100 * cpu / wall,
            "rss_bytes": rss,
            # CPU seconds of the daemon (user + system) from the first drop to the last create,
            # per file and per request line: the figure that travels between machines.
            "cpu_ms_per_file": 1000 * cpu / plan.intake_files,
            "cpu_us_per_line": 1e6 * cpu / lines,
            "cpu_user_ms_per_file": 1000 * user / plan.intake_files,
            "cpu_system_ms_per_file": 1000 * system / plan.intake_files,
        }
    )
    return metrics


def _script(
    ctx: Context, emu: Emulator, name: str, files: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one run of the script on ``files`` files of its own."""
    root = ctx.folder("intake", name)
    write_batch_files(root / "inbox", name, files, ctx.plan.intake_lines)
    out = root / "times.json"
    proc = subprocess.Popen(
        sdk_script(emu.url, root / "inbox", out),
        env=child_env(),
        cwd=root,
        stdout=(root / "script.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, out


def _script_metrics(out: Path, calls: int) -> dict[str, Any]:
    import json

    timings = json.loads(out.read_text())
    started = float(timings["started"])
    created = {k: float(v) for k, v in timings["created"].items()}
    drop = dict.fromkeys(created, started)  # every file is there when the script starts
    return _run_metrics(drop, created, started, calls)


def script_runs(ctx: Context, emu: Emulator) -> list[dict[str, Any]]:
    """The script's runs: side by side (each a sequential process of its own) or in turn."""
    runs = ctx.plan.runs
    if not ctx.plan.script_parallel:
        results = []
        for run in range(runs):
            emu.reset_stats()
            proc, out = _script(ctx, emu, f"script-{run}", ctx.plan.intake_files)
            if proc.wait() != 0:
                raise RuntimeError("the SDK script failed")
            results.append(_script_metrics(out, emu.stats()["total"]))
        return results
    emu.reset_stats()
    started = [_script(ctx, emu, f"script-{run}", ctx.plan.intake_files) for run in range(runs)]
    for proc, _ in started:
        if proc.wait() != 0:
            raise RuntimeError("the SDK script failed")
    calls = emu.stats()["total"] // runs
    return [_script_metrics(out, calls) for _, out in started]


def solo_check(ctx: Context, emu: Emulator, files: int) -> float | None:
    """One short script run alone: the side-by-side runs should match its rate."""
    proc, out = _script(ctx, emu, "script-solo", files)
    if proc.wait() != 0:
        raise RuntimeError("the SDK script failed")
    rate: float | None = _script_metrics(out, 0)["files_per_s"]
    return rate


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    emu = Emulator.start(
        ctx.folder("intake") / "emulator.log",
        speed=1.0,
        faults=(f"latency:1,delay={plan.latency_s}",),
        processing={"queue_s": 86400.0},
    )
    try:
        batchd = [batchd_run(ctx, emu, r) for r in range(plan.runs)]
        script = script_runs(ctx, emu)
        solo = solo_check(ctx, emu, max(10, plan.intake_files // 10))
    finally:
        emu.stop()
    keys = ("files_per_s", "latency_p50_s", "latency_p95_s", "elapsed_s", "calls_per_file")
    result: dict[str, Any] = {
        "batchd": {k: summary([r[k] for r in batchd]) for k in keys},
        "script": {k: summary([r[k] for r in script]) for k in keys},
        "batchd_extra": {
            k: summary([r[k] for r in batchd])
            for k in (
                "cpu_percent_of_core",
                "rss_bytes",
                "cpu_ms_per_file",
                "cpu_us_per_line",
                "cpu_user_ms_per_file",
                "cpu_system_ms_per_file",
            )
        },
        "runs": {"batchd": batchd, "script": script},
        "settings": {
            "files": plan.intake_files,
            "lines_per_file": plan.intake_lines,
            "latency_s": plan.latency_s,
            "emulator": emu.args,
            "batchd_overrides": describe(BULK_LOAD),
            "script_runs_side_by_side": plan.script_parallel,
        },
        "script_solo_files_per_s": solo,
    }
    b, s = result["batchd"], result["script"]
    result["throughput_ratio"] = ratio(b["files_per_s"]["median"], s["files_per_s"]["median"])
    result["p95_latency_ratio"] = ratio(s["latency_p95_s"]["median"], b["latency_p95_s"]["median"])
    return result
