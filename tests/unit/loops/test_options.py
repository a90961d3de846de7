"""Per-file options: a sidecar ``<name>.jsonl.json`` dropped before the file is applied to that
file alone, validated like the configuration, and consumed (it never stays in the inbox)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchd.errors import IntakeRejected
from batchd.models import JobState, SubmissionState
from batchd.options import parse_options
from tests.unit.loops.conftest import World, request_lines


def sidecar(world: World, name: str, options: object) -> Path:
    path = world.paths.inbox / f"{name}.json"
    path.write_text(options if isinstance(options, str) else json.dumps(options))
    return path


async def test_a_sidecar_sets_this_files_options_and_goes_with_it(world: World) -> None:
    side = sidecar(
        world,
        "a.jsonl",
        {"model": "big", "metadata": {"owner": "ana"}, "timeout_hours": 48},
    )
    sub = await world.accept("a.jsonl", request_lines(2))
    assert sub.state is SubmissionState.ACTIVE
    assert (sub.model, sub.timeout_hours) == ("big", 48)
    assert sub.metadata == {"team": "ml", "owner": "ana"}  # merged over the route's
    assert not side.exists()  # consumed, never left in the inbox
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    spec = world.provider.jobs[job.provider_job_id or ""].spec
    assert spec.model == "big" and spec.metadata["owner"] == "ana"
    world.provider.finish(job.provider_job_id or "", state=JobState.SUCCEEDED)
    await world.tracker.run_once()
    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    folder = Path(done.results_dir or "")
    assert json.loads((folder / "options.json").read_text())["model"] == "big"
    assert not list(world.paths.processing.iterdir())


async def test_a_bad_sidecar_rejects_its_file_naming_the_key(world: World) -> None:
    sidecar(world, "a.jsonl", {"modle": "big", "timeout_hours": 0})
    sub = await world.accept("a.jsonl", request_lines(2))
    assert sub.state is SubmissionState.REJECTED
    reason = (world.paths.rejected / "a.reason.txt").read_text()
    assert "a.jsonl.json: modle: unknown key; did you mean 'model'?" in reason
    assert "a.jsonl.json: timeout_hours: Input should be greater than or equal to 1" in reason
    assert (world.paths.rejected / "a.jsonl.json").exists()  # moved with its file
    assert not list(world.paths.inbox.iterdir())


async def test_allow_duplicate_accepts_the_same_content_again(world: World) -> None:
    first = await world.accept("a.jsonl", request_lines(2))
    sidecar(world, "b.jsonl", {"allow_duplicate": True})
    second = await world.accept("b.jsonl", request_lines(2))
    plain = await world.accept("c.jsonl", request_lines(2))
    assert (first.state, second.state) == (SubmissionState.ACTIVE, SubmissionState.ACTIVE)
    assert plain.state is SubmissionState.REJECTED  # the override was for b.jsonl only


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "a.jsonl.json: not a JSON object"),
        ("[1]", "a.jsonl.json: must be a JSON object of options"),
        ('{"endpoint": "/v1/nope"}', "a.jsonl.json: endpoint: unknown endpoint '/v1/nope'"),
        ('{"metadata": {"batchd_x": "1"}}', "keys starting with batchd_ are reserved"),
        # batchd's instance tag: it would be overwritten silently
        ('{"metadata": {"batchd": "mine"}}', "metadata: batchd and keys starting with batchd_"),
        # a model is printed by jobs show: no escape sequence, no forged line
        ('{"model": "m\\u001b[31m"}', "a.jsonl.json: model: must be one word of printable"),
        ('{"model": "m\\nline 1: x"}', "a.jsonl.json: model: must be one word of printable"),
        ('{"model": "m\\u202ex"}', "a.jsonl.json: model: must be one word of printable"),
        ('{"allow_duplicate": "yes"}', "a.jsonl.json: allow_duplicate: Input should be"),
        ('{"timeout_hours": 1.5}', "a.jsonl.json: timeout_hours: Input should be"),
    ],
)
def test_sidecar_problems_name_the_file_and_the_key(text: str, problem: str) -> None:
    with pytest.raises(IntakeRejected) as err:
        parse_options(text.encode(), "a.jsonl.json")
    assert problem in "\n".join(str(p) for p in err.value.problems)


async def test_a_sidecar_that_is_a_symlink_is_refused(world: World, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"model": "x"}')
    (world.paths.inbox / "a.jsonl.json").symlink_to(target)
    sub = await world.accept("a.jsonl", request_lines(2))
    assert sub.state is SubmissionState.REJECTED
    assert "symbolic link" in (world.paths.rejected / "a.reason.txt").read_text()


async def test_a_sidecar_of_another_user_is_not_applied(world: World) -> None:
    """A shared inbox: mallory (uid 2001) plants report.jsonl.json before ana (uid 2000) drops
    report.jsonl; ana cannot remove it (sticky bit). It must not choose ana's model, metadata
    or duplicate override: the file is rejected saying whose sidecar it is."""
    import os

    planted = sidecar(world, "report.jsonl", {"model": "pricey", "allow_duplicate": True})
    os.chown(planted, 2001, 2001)
    staging = world.paths.inbox / ".report.part"
    staging.write_text(request_lines(2))
    os.chown(staging, 2000, 2000)
    staging.rename(world.paths.inbox / "report.jsonl")
    for _ in range(3):
        await world.intake.run_once()
        world.clock.advance(3)
    [sub] = await world.store.list_submissions()
    assert sub.state is SubmissionState.REJECTED and sub.model != "pricey"
    reason = (world.paths.rejected / "report.reason.txt").read_text()
    assert (
        "report.jsonl.json: belongs to another user (uid 2001) than report.jsonl (uid 2000)"
        in reason
    )
    assert not world.provider_jobs()

    # the same user's sidecar applies as before
    mine = sidecar(world, "own.jsonl", {"model": "big"})
    os.chown(mine, 2000, 2000)
    staging = world.paths.inbox / ".own.part"
    staging.write_text(request_lines(3))
    os.chown(staging, 2000, 2000)
    staging.rename(world.paths.inbox / "own.jsonl")
    for _ in range(3):
        await world.intake.run_once()
        world.clock.advance(3)
    [own] = [s for s in await world.store.list_submissions() if s.name == "own.jsonl"]
    assert (own.state, own.model) == (SubmissionState.ACTIVE, "big")
