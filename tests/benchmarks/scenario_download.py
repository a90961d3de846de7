"""Scenario 3, download: one ~1 GB result file, each variant in a fresh child process.

The emulator produces the file as a real job's output (chat completions whose length follows
``max_tokens``). One untimed download first reads it into the page cache; then the variants run
interleaved, ``download_runs`` rounds of all four, each round starting one variant later
(batchd, aiohttp, aiohttp-fsync, sdk; then aiohttp, aiohttp-fsync, sdk, batchd; ...) so that no
variant always follows the same one; dirty pages are written out (``os.sync``) before each, and
the destination is deleted after. The target compares batchd with ``aiohttp-fsync`` (a bare
download plus the one fsync that durability costs), medians over the rounds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.request
from typing import Any

from batchd.emulator.outputs import MAX_COMPLETION_TOKENS
from tests.benchmarks.configs import ENDPOINT, MODEL
from tests.benchmarks.plan import Context
from tests.benchmarks.procs import API_KEY, Emulator, child_env, python_module
from tests.benchmarks.stats import ratio, summary

VARIANTS = ("batchd", "aiohttp", "aiohttp-fsync", "sdk")
LINES = 1024  # at least; more when a line would pass MAX_COMPLETION_TOKENS
BYTES_PER_TOKEN = 5.15  # the emulator's filler words with their spaces, and the JSON around them


def _api(emu: Emulator, method: str, path: str, body: bytes | None, ctype: str) -> Any:
    request = urllib.request.Request(emu.url + path, data=body, method=method)
    request.add_header("Authorization", f"Bearer {API_KEY}")
    request.add_header("Content-Type", ctype)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def make_big_output(emu: Emulator, target_bytes: int) -> tuple[str, int, float]:
    """Create and finish a job whose output is about ``target_bytes``; returns (file id,
    size, seconds the emulator took)."""
    # At least LINES lines, and enough that no line asks for more tokens than the emulator
    # answers (a context window's worth; 90 % of it, to stay under it after rounding).
    per_line = int(MAX_COMPLETION_TOKENS * 0.9) * BYTES_PER_TOKEN
    count = max(LINES, math.ceil(target_bytes / per_line))
    tokens = math.ceil(target_bytes / count / BYTES_PER_TOKEN)
    lines = [
        json.dumps(
            {
                "custom_id": f"r{i}",
                "body": {
                    "messages": [{"role": "user", "content": f"say {i}"}],
                    "max_tokens": tokens,
                },
            }
        )
        for i in range(count)
    ]
    boundary = "benchboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
        + "\n".join(lines)
        + f"\n\r\n--{boundary}--\r\n"
    ).encode()
    uploaded = _api(emu, "POST", "/v1/files", body, f"multipart/form-data; boundary={boundary}")
    started = time.perf_counter()
    create = {"endpoint": ENDPOINT, "model": MODEL, "input_files": [uploaded["id"]]}
    job = _api(emu, "POST", "/v1/batch/jobs", json.dumps(create).encode(), "application/json")
    while job["status"] not in {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}:
        time.sleep(0.2)
        job = _api(emu, "GET", f"/v1/batch/jobs/{job['id']}", None, "application/json")
    if job["status"] != "SUCCESS" or not job["output_file"]:
        raise RuntimeError(f"the big job ended {job['status']}")
    info = _api(emu, "GET", f"/v1/files/{job['output_file']}", None, "application/json")
    return str(job["output_file"]), int(info["bytes"]), time.perf_counter() - started


def _download(ctx: Context, emu: Emulator, variant: str, file_id: str) -> dict[str, Any]:
    dest = ctx.folder("download") / f"{variant}.jsonl"
    os.sync()
    out = subprocess.run(
        python_module(
            "tests.benchmarks.download_child",
            variant,
            "--server",
            emu.url,
            "--file-id",
            file_id,
            "--dest",
            str(dest),
        ),
        env=child_env(),
        cwd=dest.parent,
        capture_output=True,
        check=True,
        timeout=600,
    )
    dest.unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    emu = Emulator.start(ctx.folder("download") / "emulator.log", speed=1000.0)
    try:
        file_id, size, made_s = make_big_output(emu, plan.download_bytes)
        _download(ctx, emu, "aiohttp", file_id)  # untimed: the file into the page cache
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for round_ in range(plan.download_runs):
            shift = round_ % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                runs[variant].append(_download(ctx, emu, variant, file_id))
    finally:
        emu.stop()
    for variant, results in runs.items():
        for r in results:
            if r["bytes"] != size or r["on_disk"] != size:
                raise RuntimeError(f"{variant}: got {r['bytes']} bytes of {size}")
    table = {
        v: {
            "mb_per_s": summary([r["mb_per_s"] for r in rs]),
            "seconds": summary([r["seconds"] for r in rs]),
            "rss_growth_bytes": summary([r["rss_growth"] for r in rs]),
        }
        for v, rs in runs.items()
    }
    return {
        "runs_per_variant": plan.download_runs,
        "file_bytes": size,
        "emulator_generation_s": made_s,
        "variants": table,
        "runs": runs,
        "throughput_vs_aiohttp": ratio(
            table["batchd"]["mb_per_s"]["median"], table["aiohttp"]["mb_per_s"]["median"]
        ),
        "throughput_vs_aiohttp_fsync": ratio(
            table["batchd"]["mb_per_s"]["median"], table["aiohttp-fsync"]["mb_per_s"]["median"]
        ),
    }
