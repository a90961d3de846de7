"""``batchd status``: the "idle, everything delivered" signal, with a meaningful exit code."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from batchd.cli import run
from batchd.models import JobState
from batchd.store.base import EventSpec, JobStore

from .conftest import NOW, accepted, with_store

EXIT_BUSY = 4


def status(capsys: Any, config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = run(["status", "--json", "--config", str(config), *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_fresh_installation_is_idle(config: Path, capsys: Any):
    code, view = status(capsys, config)
    assert (code, view) == (
        0,
        {
            "open_submissions": 0,
            "open_jobs": 0,
            "pending_downloads": 0,
            "undelivered_events": 0,
            "daemon_running": False,
            "idle": True,
        },
    )
    assert not (config.parent / "data" / "batchd.lock").exists()  # the probe creates nothing


def test_open_work_is_busy_until_downloaded_and_delivered(config: Path, capsys: Any):
    async def open_one(store: JobStore) -> str:
        _, job = await accepted(store, "a.jsonl")
        return job.id

    job_id = with_store(config, open_one)
    code, view = status(capsys, config)
    assert code == EXIT_BUSY
    assert (view["open_submissions"], view["open_jobs"], view["idle"]) == (1, 1, False)
    assert view["undelivered_events"] == 1  # submission.accepted, not yet fanned out

    async def finish_job(store: JobStore) -> None:
        await store.transition_job(job_id, JobState.RUNNING, JobState.SUCCEEDED, now=NOW + 1)

    with_store(config, finish_job)
    code, view = status(capsys, config)
    assert (code, view["open_jobs"], view["pending_downloads"]) == (EXIT_BUSY, 0, 1)


def test_undelivered_events_alone_keep_it_busy(config: Path, capsys: Any):
    async def one_event(store: JobStore) -> None:
        event = await store.append_event(EventSpec("batch.created", {}), now=NOW)
        await store.fan_out(event.id, ["hook"], now=NOW)

    with_store(config, one_event)
    code, view = status(capsys, config)
    assert (code, view["undelivered_events"], view["open_submissions"]) == (EXIT_BUSY, 1, 0)
    assert run(["status", "--wait", "--timeout", "0.1", "--config", str(config)]) == EXIT_BUSY
    assert capsys.readouterr().out.startswith("busy: open submissions 0")


def test_it_tells_whether_a_daemon_holds_the_data_folder(config: Path, capsys: Any):
    lock = config.parent / "data" / "batchd.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert status(capsys, config)[1]["daemon_running"] is True
    assert status(capsys, config)[1]["daemon_running"] is False
