"""The baseline: the script a user writes today with the official ``mistralai`` SDK.

Sequential, as in Mistral's batch docs and cookbook: for each file, upload it and create a job;
then ``while status not terminal: sleep(60); get()``; then ``files.download(...).read()`` into a
results file. The only additions are ``time.time()`` stamps written to ``--out`` at the end, and
``sleep(60)`` divided by the emulator's speed (60 emulated seconds).

    python -m tests.benchmarks.sdk_script --server URL --inbox DIR --out times.json \
        [--results DIR --speed 60]     # without --results: stop once every job is created
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Final

from mistralai.client import Mistral

TERMINAL = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}
MODEL = "mistral-small-latest"
ENDPOINT: Final = "/v1/chat/completions"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--inbox", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()

    client = Mistral(api_key=os.environ["MISTRAL_API_KEY"], server_url=args.server)
    started = time.time()
    created = {}
    jobs = []
    for path in sorted(args.inbox.glob("*.jsonl")):
        uploaded = client.files.upload(
            file={"file_name": path.name, "content": path.read_bytes()}, purpose="batch"
        )
        job = client.batch.jobs.create(
            input_files=[uploaded.id],
            model=MODEL,
            endpoint=ENDPOINT,
            metadata={"file": path.name},
        )
        created[path.name] = time.time()
        jobs.append((path, job))

    finished, seen = {}, {}
    if args.results is not None:
        for path, created_job in jobs:
            job = created_job
            while job.status not in TERMINAL:
                time.sleep(60 / args.speed)
                job = client.batch.jobs.get(job_id=job.id)
            seen[path.name] = time.time()
            if job.output_file:
                output = client.files.download(file_id=job.output_file)
                (args.results / f"{path.stem}.results.jsonl").write_bytes(output.read())
            if job.error_file:
                errors = client.files.download(file_id=job.error_file)
                (args.results / f"{path.stem}.errors.jsonl").write_bytes(errors.read())
            finished[path.name] = time.time()

    timings = {
        "started": started,
        "created": created,
        "terminal_seen": seen,
        "finished": finished,
        "job_ids": {p.name: j.id for p, j in jobs},
    }
    args.out.write_text(json.dumps(timings))


if __name__ == "__main__":
    main()
