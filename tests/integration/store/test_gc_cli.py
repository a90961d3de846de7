"""``batchd gc`` over a real configuration, a real SQLite database and a real done/ folder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.cli import run
from batchd.folder_origin import FolderOrigin
from batchd.models import Outcome
from batchd.store.base import ChunkPlan, EventSpec, NewSubmission
from batchd.store.sqlite import SqliteJobStore

DAY = 86_400.0


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    with capture_logs():
        yield


async def seed(tmp_path: Path, finished_at: float) -> tuple[str, Path]:
    """One submission finished at ``finished_at`` with its results folder and events."""
    (tmp_path / "data").mkdir(exist_ok=True)
    store = SqliteJobStore(tmp_path / "data" / "batchd.sqlite3")
    await store.open()
    try:
        folder = tmp_path / "spool" / "done" / "old"
        new = NewSubmission(
            route="chat",
            name="old.jsonl",
            provider="emulator",
            endpoint="/v1/chat/completions",
            model="m",
            timeout_hours=24,
            metadata={},
            size_bytes=1,
            origin=FolderOrigin(
                host=None,
                inbox="/x",
                processing="/y",
                dev=1,
                ino=1,
            ).to_json(),
        )
        sub = await store.begin_claim(new, now=finished_at)
        await store.mark_claimed(sub.id, now=finished_at)
        [job] = await store.accept_submission(
            sub.id,
            sha256="ab" * 32,
            line_count=1,
            results_dir=str(folder),
            chunks=[ChunkPlan(0, 0, 1, 10)],
            now=finished_at,
            event=EventSpec("submission.accepted", {}),
        )
        for state in ("creating", "succeeded"):
            job = await store.transition_job(job.id, job.state, state, now=finished_at)  # type: ignore[arg-type]
        await store.transition_job(
            job.id, job.state, job.state, now=finished_at, result_state="collected"
        )
        await store.finish_submission(
            sub.id, Outcome.SUCCEEDED, now=finished_at, event=EventSpec("results.ready", {})
        )
        for event in await store.unfanned_events():
            await store.fan_out(event.id, [], now=finished_at)
    finally:
        await store.close()
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"submission_id": sub.id}))
    return sub.id, folder


def configure(tmp_path: Path) -> Path:
    path = tmp_path / "batchd.toml"
    path.write_text(
        f"""
[daemon]
data_dir = "{tmp_path / "data"}"
[retention]
done_days = 7
events_days = 7
rows_days = 7
"""
    )
    return path


def test_gc_is_a_dry_run_until_apply(tmp_path: Path, capsys: Any) -> None:
    config = configure(tmp_path)
    sub_id, folder = asyncio.run(seed(tmp_path, time.time() - 10 * DAY))

    assert run(["gc", "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["applied"] is False
    assert shown["done_folders"] == [str(folder)]
    assert (shown["submissions"], shown["jobs"]) == (1, 1)
    assert shown["events"] >= 2
    assert folder.is_dir()

    assert run(["gc", "--apply", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"removed {folder}/" in out
    assert not folder.exists()

    async def gone() -> Any:
        store = SqliteJobStore(tmp_path / "data" / "batchd.sqlite3", migrate=False)
        await store.open()
        try:
            return await store.get_submission(sub_id), await store.list_events()
        finally:
            await store.close()

    assert asyncio.run(gone()) == (None, [])
    assert run(["gc", "--json", "--config", str(config)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["done_folders"], again["submissions"], again["events"]) == ([], 0, 0)


def test_gc_keeps_what_is_younger_than_its_days(tmp_path: Path, capsys: Any) -> None:
    config = configure(tmp_path)
    _, folder = asyncio.run(seed(tmp_path, time.time() - 2 * DAY))
    assert run(["gc", "--apply", "--vacuum", "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["done_folders"], shown["submissions"], shown["events"]) == ([], 0, 0)
    assert folder.is_dir()


def test_vacuum_without_apply_is_a_usage_error(tmp_path: Path) -> None:
    assert run(["gc", "--vacuum", "--config", str(configure(tmp_path))]) == 2
