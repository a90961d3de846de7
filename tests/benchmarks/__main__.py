"""``python -m tests.benchmarks [--quick] [--runs N] [--out DIR] [--only NAME ...] [--keep]``

Runs every scenario in turn (intake, tracking and scale, download, end to end), then writes
``<out>/latest.json`` (everything measured, every setting) and ``<out>/latest.md`` (the table
for the README's Performance section).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchd.log import configure_logging
from tests.benchmarks import (
    report,
    scenario_download,
    scenario_e2e,
    scenario_intake,
    scenario_tracking,
)
from tests.benchmarks.machine import machine_facts
from tests.benchmarks.plan import FULL, QUICK, Context

SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "intake": scenario_intake.run,
    "tracking": scenario_tracking.run,
    "download": scenario_download.run,
    "e2e": scenario_e2e.run,
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs of every figure (default: the plan's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the report goes")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SCENARIOS), help="run only these scenarios"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(level="warning", fmt="console")
    plan = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            raise SystemExit("--runs must be at least 1")
        plan = dataclasses.replace(plan, runs=args.runs, download_runs=args.runs)
    work = args.work or Path(tempfile.mkdtemp(prefix="batchd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "tests.benchmarks", *sys.argv[1:]]),
        "machine": machine_facts(),
        "plan": plan.to_json(),
        "scenarios": {},
        "scenario_seconds": {},
    }
    try:
        for name, scenario in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            print(f"[bench] {name} ...", flush=True)
            began = time.monotonic()
            result["scenarios"][name] = scenario(Context(plan, work / name))
            result["scenario_seconds"][name] = time.monotonic() - began
            print(f"[bench] {name} done in {result['scenario_seconds'][name]:.0f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["elapsed_s"] = time.monotonic() - started
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    table = report.markdown(result)
    (args.out / "latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
