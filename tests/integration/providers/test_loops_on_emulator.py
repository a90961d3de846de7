"""batchd's loops (intake, submitter, tracker, collector, driven by ``run_once()``) against the
emulator over loopback, where the emulator misbehaves as the real API has (issue 13 items 16
and 17): ``outputs`` null on finished jobs, result files shorter than the job's counters
(mistralai/client-python#159), counters lower than the files.

What batchd must do: requests without a result line are marked in results.jsonl with an error
that says so, the outcome is partial and ``results.ready`` says so, and nothing is retried
forever (a short file is downloaded ``verify_attempts`` times, a long one once)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from batchd.emulator import (
    Behaviour,
    Emulator,
    EmulatorConfig,
    FaultConfig,
    FaultKind,
    FaultRule,
    serve,
)
from batchd.models import Outcome, ResultState, Submission, SubmissionState
from batchd.providers.mistral import MistralProvider
from tests.integration.providers.conftest import emulator_config, fast_settings
from tests.unit.loops.conftest import World, request_lines

CONTENT = "GET /v1/files/{file_id}/content"


@asynccontextmanager
async def world_on(tmp_path: Path, config: EmulatorConfig) -> AsyncIterator[tuple[World, Emulator]]:
    """The loops' small world, with its provider replaced by the Mistral client on loopback."""
    async with serve(config) as emu, aiohttp.ClientSession() as session:
        world = World(tmp_path)
        providers = {world.route.provider: MistralProvider(fast_settings(emu.url), session)}
        world.submitter.set_providers(providers)
        world.tracker.set_providers(providers)
        world.collector.set_providers(providers)
        yield world, emu


async def run_until_done(world: World, emu: Emulator, sub: Submission) -> Submission:
    for _ in range(30):
        await world.submitter.run_once()
        await emu.settle()
        emu.advance(600)
        await emu.settle()
        await world.tracker.run_once()
        await world.collector.run_once()
        done = await world.store.get_submission(sub.id)
        assert done is not None
        if done.state is SubmissionState.DONE:
            return done
        world.clock.advance(120)
    raise AssertionError(f"{sub.name} did not finish")


def results_of(sub: Submission) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    folder = Path(sub.results_dir or "")
    records = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    return records, json.loads((folder / "summary.json").read_text())


async def ready_event(world: World, sub: Submission) -> dict[str, Any]:
    events = await world.store.list_events(limit=1000)
    (event,) = [e for e in events if e.type == "results.ready" and e.submission_id == sub.id]
    data: dict[str, Any] = event.data
    return data


async def test_outputs_null_on_finished_jobs_changes_nothing(tmp_path: Path) -> None:
    """Issue 13 item 16: batchd reads results from the output file, never from ``outputs``."""
    config = emulator_config(behaviour=Behaviour(outputs="null"))
    async with world_on(tmp_path, config) as (world, emu):
        sub = await world.accept("four.jsonl", request_lines(4))
        done = await run_until_done(world, emu, sub)
        records, summary = results_of(done)
        assert done.outcome is Outcome.SUCCEEDED
        assert [(r["custom_id"], r["status_code"]) for r in records] == [
            (f"r{i}", 200) for i in range(4)
        ]
        assert summary["counts"]["missing"] == 0
        assert all(j["outputs"] is None for j in emu.jobs())


async def test_results_shorter_than_the_count_end_partial_with_the_missing_marked(
    tmp_path: Path,
) -> None:
    config = emulator_config(faults=_faults(FaultKind.SHORT_RESULTS))
    async with world_on(tmp_path, config) as (world, emu):
        sub = await world.accept("four.jsonl", request_lines(4))
        done = await run_until_done(world, emu, sub)
        records, summary = results_of(done)
        assert done.outcome is Outcome.PARTIAL
        assert [(r["custom_id"], r["status_code"]) for r in records] == [
            ("r0", 200),
            ("r1", 200),
            ("r2", None),
            ("r3", None),
        ]
        reason = (
            "the provider returned no result for this request (job succeeded; "
            "its result files held 2 lines where it counted 4)"
        )
        assert [r["error"] for r in records[2:]] == [{"message": reason}] * 2
        assert summary["outcome"] == "partial"
        counts = summary["counts"]
        assert (counts["requests"], counts["succeeded"], counts["missing"]) == (4, 2, 2)
        (job,) = await world.jobs(sub.id)
        assert (job.result_state, job.last_error) == (
            ResultState.COLLECTED,
            "unverified: its result files held 2 lines where it counted 4",
        )
        event = await ready_event(world, done)
        assert event["outcome"] == "partial" and event["counts"]["missing"] == 2
        assert {"message": reason, "count": 2} in event["top_errors"]
        await _nothing_more_happens(world, emu, downloads=3)  # verify_attempts, then accepted


async def test_counts_lower_than_the_files_accept_every_result_at_once(tmp_path: Path) -> None:
    config = emulator_config(faults=_faults(FaultKind.SHORT_COUNTS))
    async with world_on(tmp_path, config) as (world, emu):
        sub = await world.accept("four.jsonl", request_lines(4))
        done = await run_until_done(world, emu, sub)
        records, summary = results_of(done)
        assert done.outcome is Outcome.SUCCEEDED  # every request has its result
        assert [r["status_code"] for r in records] == [200] * 4
        assert summary["counts"]["missing"] == 0
        (entry,) = summary["jobs"]
        assert entry["problem"] == "unverified: its result files held 4 lines where it counted 2"
        await _nothing_more_happens(world, emu, downloads=1)  # downloading again cannot help


def _faults(kind: FaultKind) -> FaultConfig:
    return FaultConfig((FaultRule(kind, fraction=0.5),))


async def _nothing_more_happens(world: World, emu: Emulator, *, downloads: int) -> None:
    assert emu.stats().get(CONTENT) == downloads
    for _ in range(5):
        world.clock.advance(3600)
        assert await world.collector.run_once() == 0
        assert await world.tracker.run_once() == 0
    assert emu.stats().get(CONTENT) == downloads
