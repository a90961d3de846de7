"""Fixtures for the command-line tests: a configuration file whose store (by default a real
SQLite database in its data folder) is filled through the store's public verbs, opened as the
commands open it (``[store] url``); commands run in-process (``run``)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.config_load import load_settings
from batchd.folder_origin import FolderOrigin
from batchd.models import Job, JobState, Submission
from batchd.store.base import ChunkPlan, EventSpec, JobStore, NewSubmission
from batchd.store.registry import make_store

NOW = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Unconfigured structlog prints to stdout, which would mix with the --json output."""
    with capture_logs():
        yield


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "batchd.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{data}"\n\n[[routes]]\nname = "chat"\n'
        f'spool = "{tmp_path / "spool"}"\nprovider = "emulator"\n'
    )
    return path


def with_store(config: Path, action: Any) -> Any:
    async def go() -> Any:
        store = make_store(load_settings(config, environ={}).store.url)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def new_submission(name: str) -> NewSubmission:
    return NewSubmission(
        route="chat",
        name=name,
        provider="emulator",
        endpoint="/v1/chat/completions",
        model="mistral-small-latest",
        timeout_hours=24,
        metadata={},
        size_bytes=100,
        origin=FolderOrigin(
            host=None,
            inbox=f"/spool/inbox/{name}",
            processing=f"/spool/processing/1-{name}",
            dev=1,
            ino=1,
        ).to_json(),
    )


async def accepted(
    store: JobStore, name: str, *, now: float = NOW, lines: int = 10, sha256: str | None = None
) -> tuple[Submission, Job]:
    """A submission accepted with one job, which the provider knows as ``prov-<name>``."""
    sub = await store.begin_claim(new_submission(name), now=now)
    await store.mark_claimed(sub.id, now=now)
    [job] = await store.accept_submission(
        sub.id,
        sha256=sha256 or hashlib.sha256(name.encode()).hexdigest(),
        line_count=lines,
        results_dir=f"/spool/done/{name}",
        chunks=[ChunkPlan(index=0, line_start=0, line_count=lines, byte_count=100)],
        now=now,
        event=EventSpec("submission.accepted", {"submission_id": sub.id}),
    )
    job = await store.transition_job(job.id, JobState.NEW, JobState.CREATING, now=now)
    job = await store.transition_job(
        job.id, JobState.CREATING, JobState.RUNNING, now=now, provider_job_id=f"prov-{name}"
    )
    current = await store.get_submission(sub.id)
    assert current is not None
    return current, job
