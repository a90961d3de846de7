"""The whole daemon under SIGKILL on an OpenAI route (issue 16): ``batchd emulator --provider
openai`` with faults (5xx and resets after upload and create, 503 on the batches list, a slow
create that takes effect after its client gave up) and ``batchd run`` killed at random moments
while files split into several chunks are dropped. OpenAI's list has no metadata filter, so
every recovery goes through the newest-first walk. Then one daemon settles everything and:

1. every chunk has exactly one batch at the provider (by its ``batchd_job`` tag), and every
   batch tagged by batchd belongs to a chunk;
2. every dropped file's results are whole: one line per request, in input order, with the
   answer the emulator gives that request.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchd.emulator.openai.responses import respond
from tests.acceptance.crash_harness import (
    API_KEY,
    API_KEY_ENV,
    DaemonProcess,
    EmulatorProcess,
    read_log_events,
    wait_until,
)
from tests.notify_listener import NotifyListener

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
MAX_REQUESTS_PER_JOB = 4
KILLS = 8
LATE_S = 7.0
FAST = ["--processing", "queue_s=2", "--processing", "min_run_s=4", "--processing", "finalize_s=1"]
FAULTS = [
    "--fault", f"late:0.15,route=POST /v1/batches,delay={LATE_S}",
    "--fault", "500:0.08,route=POST /v1/batches,phase=after",
    "--fault", "reset:0.08,route=POST /v1/batches,phase=after",
    "--fault", "reset:0.08,route=POST /v1/files,phase=after",
    "--fault", "503:0.05,route=GET /v1/batches",
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
list_threshold = 6

[collect]
retry_base_s = 0.3
retry_max_s = 2.0

[providers.oai]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "{key_env}"
requests_per_second = 0
timeout_s = 5.0
connect_timeout_s = 2.0
download_timeout_s = 20.0
read_retries = 3
retry_base_s = 0.1
retry_max_s = 0.5
max_requests_per_job = {max_requests}

[[routes]]
name = "chat"
spool = "{spool}"
provider = "oai"
endpoint = "{endpoint}"
model = "{model}"
"""


def _requests(name: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i in range(n):
        body: dict[str, Any] = {"messages": [{"role": "user", "content": f"{name} question {i}"}]}
        if i % 3 == 0:
            body["max_tokens"] = 1 + i % 7
        if i == 5:
            body["model"] = MODEL  # a line naming the model; the others get the route's
        out.append((f"{name}-r{i}", body))
    return out


def _expected(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    _, answer = respond(CHAT, {"model": MODEL, **body})
    return {"custom_id": custom_id, "status_code": 200, "response": answer, "error": None}


class OpenAIRun:
    def __init__(self, tmp: Path, emulator: EmulatorProcess, listener: NotifyListener) -> None:
        self.tmp = tmp
        self.emulator = emulator
        self.listener = listener
        self.spool = tmp / "spool"
        self.data = tmp / "data"
        self.config = tmp / "batchd.toml"
        self.logs: list[Path] = []
        self.daemons: list[DaemonProcess] = []
        self.drops: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        (self.spool / "inbox").mkdir(parents=True)
        self.config.write_text(
            CONFIG.format(
                data=self.data,
                url=emulator.url,
                key_env=API_KEY_ENV,
                max_requests=MAX_REQUESTS_PER_JOB,
                spool=self.spool,
                endpoint=CHAT,
                model=MODEL,
            )
        )

    def drop(self, name: str, n: int) -> None:
        requests = _requests(name, n)
        data = b"".join(
            json.dumps({"custom_id": cid, "body": body}).encode() + b"\n" for cid, body in requests
        )
        part = self.spool / "inbox" / f".{name}.jsonl.part"
        part.write_bytes(data)
        part.rename(self.spool / "inbox" / f"{name}.jsonl")
        self.drops[name] = requests

    def spawn(self) -> DaemonProcess:
        log = self.tmp / "logs" / f"run-{len(self.logs):04d}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs.append(log)
        daemon = DaemonProcess.spawn(self.config, log, self.listener, "unused")
        self.daemons.append(daemon)
        return daemon

    def finished(self) -> bool:
        return all((self.spool / "done" / name / "summary.json").exists() for name in self.drops)

    def logged(self) -> Counter[str]:
        return Counter(str(e.get("event")) for e in read_log_events(self.logs))


async def _batches(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    """Every batch, by following the cursor (the test's own listing, faults cleared)."""
    await emulator.clear_faults()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    found: list[dict[str, Any]] = []
    after: str | None = None
    async with aiohttp.ClientSession() as session:
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            async with session.get(
                f"{emulator.url}/v1/batches", params=params, headers=headers
            ) as resp:
                page = await resp.json()
            found.extend(page["data"])
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]


async def _check(run: OpenAIRun) -> None:
    chunks = {name: -(-len(reqs) // MAX_REQUESTS_PER_JOB) for name, reqs in run.drops.items()}
    batches = await _batches(run.emulator)
    per_job = Counter((b["metadata"] or {}).get("batchd_job") for b in batches)
    assert None not in per_job, "a batch without batchd's tag"
    assert sum(per_job.values()) == sum(chunks.values()), per_job
    assert set(per_job.values()) == {1}, f"a chunk with more than one batch: {per_job}"
    for name, requests in run.drops.items():
        lines = (run.spool / "done" / name / "results.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["custom_id"] for r in records] == [cid for cid, _ in requests]
        for record, (cid, body) in zip(records, requests, strict=True):
            expected = _expected(cid, body)
            assert {k: record.get(k) for k in expected} == expected


async def _settle(run: OpenAIRun, timeout_s: float) -> None:
    daemon = run.spawn()
    await daemon.wait_ready(run.listener)
    try:
        await wait_until(run.finished, timeout_s=timeout_s, what="every drop done", interval_s=0.3)
    finally:
        code = await daemon.terminate()
    assert code == 0, f"SIGTERM: exit code {code}: {daemon.tail()}"


@pytest.mark.timeout(240)
async def test_sigkill_on_an_openai_route_makes_one_batch_per_chunk(tmp_path: Path) -> None:
    rng = random.Random(16)
    emulator = EmulatorProcess.start(
        tmp_path, ["--provider", "openai", "--speed", "4", "--seed", "16", *FAST, *FAULTS]
    )
    try:
        with NotifyListener.path() as listener:
            run = OpenAIRun(tmp_path, emulator, listener)
            try:
                for k in range(KILLS):
                    if k % 2 == 0:
                        run.drop(f"chat-{k:02d}", rng.choice([5, 9, 13]))
                    daemon = run.spawn()
                    await daemon.wait_ready(listener)
                    await asyncio.sleep(rng.uniform(0.1, 1.5))
                    daemon.kill()
                await _settle(run, 90.0)
            finally:
                for daemon in run.daemons:
                    if daemon.alive():
                        daemon.kill()
            await asyncio.sleep(LATE_S)  # a create still held by the emulator lands first
            await _check(run)
    finally:
        emulator.stop()
    logged = run.logged()
    assert logged["submit.reconciled"] + logged["submit.upload_adopted"] >= 1, logged


async def wait_for_creates(emulator: EmulatorProcess, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await emulator.stats()).get("POST /v1/batches", 0) < count:
        assert time.monotonic() < deadline, f"no create after {timeout_s:g} s"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_a_late_create_on_an_openai_route_is_adopted_not_repeated(tmp_path: Path) -> None:
    emulator = EmulatorProcess.start(
        tmp_path,
        ["--provider", "openai", "--speed", "1", "--seed", "7", *FAST,
         "--fault", "late_reset:1,route=POST /v1/batches,delay=6"],
    )  # fmt: skip
    try:
        with NotifyListener.path() as listener:
            run = OpenAIRun(tmp_path, emulator, listener)
            try:
                run.drop("slow", 9)
                daemon = run.spawn()
                await wait_for_creates(emulator, 1)
                daemon.kill()  # the create is in flight: it lands 6 s after it was sent
                await _settle(run, 60.0)
            finally:
                for daemon in run.daemons:
                    if daemon.alive():
                        daemon.kill()
            await asyncio.sleep(LATE_S)
            await _check(run)
    finally:
        emulator.stop()
    logged = run.logged()
    assert logged["submit.reconciled"] >= 1, "the late batch was not adopted"
    assert logged["duplicate.found"] == 0
