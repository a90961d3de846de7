"""A late duplicate is cancelled and reported (issue 12), with the real daemon.

The reconcile window is set to nothing beyond the client timeout (``reconcile_window_s = 0``)
and the first create is held 7 s by the emulator (``late``) while the client gives up after
5 s: batchd creates again, adopts the second job, and the first one lands 2 s later as a second
provider job for the chunk. batchd must cancel it, record it, deliver a
``batch.duplicate_cancelled`` event naming both jobs, and list it in summary.json, with results
taken from the adopted job only.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from tests.acceptance.crash_files import ROUTES_BY_NAME, valid_drop
from tests.acceptance.crash_harness import EmulatorProcess, WebhookReceiver
from tests.acceptance.crash_run import Run, settle
from tests.acceptance.test_crash import FAST_JOBS, secret_for
from tests.notify_listener import NotifyListener

LATE = "late:1,route=POST /v1/batch/jobs,delay=7,limit=1"


def no_window(run: Run) -> None:
    text = run.config.read_text()
    text = text.replace("reconcile_window_s = 6.0", "reconcile_window_s = 0.0")
    text = text.replace("[track]\n", "[track]\nduplicate_scan_s = 5.0\n")
    run.config.write_text(text)


async def test_a_late_duplicate_is_cancelled_and_reported(tmp_path: Path) -> None:
    rng = random.Random(12)
    secret = secret_for(rng)
    # speed 1: the adopted job is still running when the late one lands
    emulator = EmulatorProcess.start(
        tmp_path, ["--speed", "1", "--seed", "7", *FAST_JOBS, "--fault", LATE]
    )
    receiver = WebhookReceiver(secret, random.Random(1), fail_rate=0.0, slow_rate=0.0)
    await receiver.start()
    try:
        with NotifyListener.path() as listener:
            run = Run(tmp_path, 12, rng, emulator, receiver, listener, secret)
            run.write_config()
            no_window(run)
            drop = valid_drop(run.rng, ROUTES_BY_NAME["chat"], 1)
            while not 1 < len(drop.requests) <= 4:  # one chunk
                drop = valid_drop(run.rng, ROUTES_BY_NAME["chat"], 1)
            run.drop(drop)
            try:
                unsettled = await settle(run, 60.0)
            finally:
                run.kill_all()
        assert unsettled is None, unsettled
        await asyncio.sleep(1.0)
        mine = [j for j in await emulator.jobs() if j["metadata"].get("batchd") == run.instance_id]
    finally:
        await receiver.stop()
        emulator.stop()

    assert len(mine) == 2, "the test did not make a duplicate"
    summary = json.loads((run.spool / "chat" / "done" / drop.stem / "summary.json").read_text())
    (job,) = summary["jobs"]
    (dup,) = summary["duplicate_jobs"]
    assert dup["job_id"] == job["job_id"]
    assert dup["kept_provider_job_id"] == job["provider_job_id"]
    assert {dup["provider_job_id"], job["provider_job_id"]} == {j["id"] for j in mine}
    assert dup["cancelled"] is True
    by_id = {j["id"]: j for j in mine}
    assert by_id[dup["provider_job_id"]]["status"] in {"CANCELLATION_REQUESTED", "CANCELLED"}
    assert by_id[job["provider_job_id"]]["status"] == "SUCCESS"

    events = [json.loads(bodies[0]) for bodies in receiver.received.values()]
    (event,) = [e for e in events if e["type"] == "batch.duplicate_cancelled"]
    assert event["data"]["provider_job_id"] == dup["provider_job_id"]
    assert event["data"]["kept_provider_job_id"] == job["provider_job_id"]
    assert event["data"]["cancelled"] is True

    results = (run.spool / "chat" / "done" / drop.stem / "results.jsonl").read_text()
    assert [json.loads(r)["custom_id"] for r in results.splitlines()] == [
        cid for cid, _ in drop.requests
    ]  # the adopted job's results, each request once
