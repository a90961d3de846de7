"""The whole daemon on an Anthropic route under SIGKILL: exactly one message batch per chunk,
although a batch carries no tag (issue 17).

One ``batchd emulator --provider anthropic`` (creates answered with 500 after they took effect,
dropped connections after them, and creates that take effect seconds after the client gave up
or died) outlives every daemon. ``batchd run`` is SIGKILLed at random moments while files of
several chunks each are dropped, and started again; then one daemon settles everything and
stops on SIGTERM. Then: every file has its results in ``done/``, complete and in input order,
under the user's custom_ids (which Anthropic would refuse: spaces, slashes, 80 characters);
and the emulator holds exactly one batch per chunk, told apart by the ids batchd sent
(``<job id>-<index>``), each with the chunk's requests and nothing else. Batches are kept after
collection (``delete_result_files = false``) so that they can be counted.

``BATCHD_CRASH_KILLS=N`` sets the number of kills (default 8), ``BATCHD_CRASH_SEED`` the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchd.providers.staging import index_of
from tests.acceptance.crash_harness import (
    API_KEY,
    API_KEY_ENV,
    DaemonProcess,
    EmulatorProcess,
    read_log_events,
    wait_until,
)
from tests.notify_listener import NotifyListener

KILLS = int(os.environ.get("BATCHD_CRASH_KILLS") or 8)
SEED = int(os.environ.get("BATCHD_CRASH_SEED") or 0) or random.SystemRandom().randrange(1, 2**31)
MAX_REQUESTS = 3
CREATE = "route=POST /v1/messages/batches"
EMULATOR_ARGS = [
    "--provider", "anthropic", "--speed", "20", "--api-key", API_KEY,
    "--processing", "queue_s=2", "--processing", "min_run_s=4", "--processing", "jitter=0.5",
    "--fault", f"500:0.2,{CREATE},phase=after",
    "--fault", f"reset:0.1,{CREATE},phase=after",
    "--fault", f"late_reset:0.1,{CREATE},delay=3",
    "--fault", "503:0.05,route=GET /v1/messages/batches*",
]  # fmt: skip

CONFIG = """\
[daemon]
data_dir = "{data}"
log_format = "json"
shutdown_grace_s = 5.0

[intake]
min_age_s = 0.2
scan_interval_s = 2.0

[submit]
retry_base_s = 0.3
retry_max_s = 2.0
reconcile_delay_s = 0.5
reconcile_window_s = 6.0

[track]
poll_initial_s = 0.3
poll_max_s = 1.0

[collect]
retry_base_s = 0.3
retry_max_s = 2.0
delete_result_files = false

[providers.claude]
kind = "anthropic"
base_url = "{url}"
api_key_env = "{key_env}"
requests_per_second = 0
timeout_s = 5.0
connect_timeout_s = 2.0
read_retries = 3
retry_base_s = 0.1
retry_max_s = 0.5
max_requests_per_job = {max_requests}

[[routes]]
name = "claude"
spool = "{spool}"
provider = "claude"
endpoint = "/v1/messages"
model = "claude-test"
"""


def user_id(file: int, line: int) -> str:
    return f"file {file} / line {line} " + "x" * 60  # no Anthropic custom_id could be this


def write_drop(inbox: Path, file: int, lines: int) -> None:
    records = [
        {
            "custom_id": user_id(file, i),
            "body": {
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": f"file {file} question {i}"},
                ],
                "max_tokens": 8,
            },
        }
        for i in range(lines)
    ]
    part = inbox / f".f{file}.jsonl.part"
    part.write_text("".join(json.dumps(r) + "\n" for r in records))
    part.rename(inbox / f"f{file}.jsonl")


async def batches(url: str) -> list[dict[str, Any]]:
    """Every batch on the emulator with its results' ids (faults off by then)."""
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    found: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        after = None
        while True:
            query = {"limit": "100", **({"after_id": after} if after else {})}
            async with session.get(f"{url}/v1/messages/batches", params=query) as resp:
                page = await resp.json()
            found += page["data"]
            if not page["has_more"]:
                break
            after = page["last_id"]
        for batch in found:
            assert batch["processing_status"] == "ended", batch
            async with session.get(batch["results_url"]) as resp:
                lines = (await resp.read()).splitlines()
            batch["sent_ids"] = [json.loads(line)["custom_id"] for line in lines]
    return found


def job_of(sent_ids: list[str], jobs: list[str]) -> str | None:
    owners = {j for j in jobs for sent in sent_ids if index_of(j, sent) is not None}
    return owners.pop() if len(owners) == 1 else None


def job_ids(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [row[0] for row in db.execute("SELECT id FROM jobs")]


@pytest.mark.timeout(300)
async def test_sigkill_on_an_anthropic_route_makes_one_batch_per_chunk(tmp_path: Path) -> None:
    print(f"\nanthropic crash test: {KILLS} kills, seed {SEED}")
    rng = random.Random(SEED)
    sizes = [rng.randint(4, 10) for _ in range(4)]
    inbox = tmp_path / "spool" / "inbox"
    inbox.mkdir(parents=True)
    emulator = EmulatorProcess.start(tmp_path, [*EMULATOR_ARGS, "--seed", str(SEED)])
    config = tmp_path / "batchd.toml"
    config.write_text(
        CONFIG.format(
            data=tmp_path / "data",
            url=emulator.url,
            key_env=API_KEY_ENV,
            max_requests=MAX_REQUESTS,
            spool=tmp_path / "spool",
        )
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    daemons: list[DaemonProcess] = []
    try:
        with NotifyListener.path() as listener:

            def spawn() -> DaemonProcess:
                log = logs / f"run-{len(daemons):03d}.log"
                daemons.append(DaemonProcess.spawn(config, log, listener, "whsec_unused"))
                return daemons[-1]

            for kill in range(KILLS):
                if kill < len(sizes):
                    write_drop(inbox, kill, sizes[kill])
                daemon = spawn()
                await daemon.wait_ready(listener)
                await asyncio.sleep(rng.uniform(0.1, 2.0))
                assert daemon.alive(), daemon.tail()
                daemon.kill()
            for file in range(KILLS, len(sizes)):
                write_drop(inbox, file, sizes[file])
            last = spawn()
            await last.wait_ready(listener)
            done = tmp_path / "spool" / "done"
            await wait_until(
                lambda: all((done / f"f{f}" / "summary.json").exists() for f in range(len(sizes))),
                timeout_s=150,
                what="every file's results",
                interval_s=0.3,
            )
            await asyncio.sleep(4)  # a late create still held by the emulator lands
            assert await last.terminate() == 0
    finally:
        for daemon in daemons:
            if daemon.alive():
                daemon.kill()
    try:
        await emulator.clear_faults()
        await asyncio.sleep(1)
        for file, size in enumerate(sizes):  # results complete, in order, under the user's ids
            lines = (done / f"f{file}" / "results.jsonl").read_text().splitlines()
            records = [json.loads(line) for line in lines]
            assert [r["custom_id"] for r in records] == [user_id(file, i) for i in range(size)]
            assert all(r["status_code"] == 200 for r in records), records
            assert all(r["response"]["type"] == "message" for r in records)
        chunks = sum(-(-size // MAX_REQUESTS) for size in sizes)
        found = await batches(emulator.url)
        jobs = job_ids(tmp_path / "data" / "batchd.sqlite3")
        assert len(jobs) == chunks
        owners = Counter(job_of(b["sent_ids"], jobs) for b in found)
        assert None not in owners, f"a batch of no single job: {found}"
        assert len(found) == chunks and all(n == 1 for n in owners.values()), owners
    finally:
        emulator.stop()
    events = Counter(str(e.get("event")) for e in read_log_events(sorted(logs.glob("*.log"))))
    print(f"batches {len(found)} for {chunks} chunks; reconciled {events['submit.reconciled']}")
