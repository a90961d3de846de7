"""``jobs list`` and ``events list`` over a real database: newest first, the same ``--limit``,
a cut list says so (stderr note, ``truncated``/``next_cursor`` in JSON), ``--cursor`` and
``--all`` page through everything, provider job ids in every row; tab-separated rows when
stdout is not a terminal, ``-q`` for ids, a bad ``--state`` lists the valid ones."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run
from batchd.models import JobState, Outcome, RequestCounts, ResultCounts
from batchd.store.base import EventSpec, JobStore

from .conftest import NOW, accepted, with_store


def fill(config: Path, n: int) -> list[str]:
    async def go(store: JobStore) -> list[str]:
        return [(await accepted(store, f"f{i}.jsonl", now=NOW + i))[0].id for i in range(n)]

    ids: list[str] = with_store(config, go)
    return ids


def listing(capsys: Any, *argv: str) -> tuple[dict[str, Any], str]:
    assert run(list(argv)) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_jobs_list_says_it_was_cut_and_pages_through_everything(config: Path, capsys: Any):
    ids = fill(config, 5)
    newest = ids[::-1]
    page, err = listing(capsys, "jobs", "list", "--json", "--limit", "2", "--config", str(config))
    assert [r["id"] for r in page["submissions"]] == newest[:2]
    assert (page["truncated"], page["next_cursor"]) == (True, newest[1])
    assert f"--cursor {newest[1]}" in err

    cursor = page["next_cursor"]
    page, _ = listing(capsys, "jobs", "list", "--json", "--limit", "2", "--cursor", cursor,
                      "--config", str(config))  # fmt: skip
    assert [r["id"] for r in page["submissions"]] == newest[2:4]
    page, err = listing(capsys, "jobs", "list", "--json", "--limit", "2", "--cursor",
                        page["next_cursor"], "--config", str(config))  # fmt: skip
    assert [r["id"] for r in page["submissions"]] == newest[4:]
    assert (page["truncated"], page["next_cursor"], err) == (False, None, "")

    page, err = listing(capsys, "jobs", "list", "--json", "--all", "--config", str(config))
    assert [r["id"] for r in page["submissions"]] == newest
    assert (page["truncated"], err) == (False, "")


def test_jobs_list_rows_carry_provider_job_ids(config: Path, capsys: Any):
    fill(config, 1)
    page, _ = listing(capsys, "jobs", "list", "--json", "--config", str(config))
    assert page["submissions"][0]["provider_job_ids"] == ["prov-f0.jsonl"]


def test_a_job_state_filter_is_applied_before_the_limit(config: Path, capsys: Any):
    ids = fill(config, 3)

    async def finish_oldest(store: JobStore) -> None:
        [job] = await store.jobs_for_submission(ids[0])
        await store.transition_job(job.id, JobState.RUNNING, JobState.SUCCEEDED, now=NOW + 9)

    with_store(config, finish_oldest)
    page, _ = listing(capsys, "jobs", "list", "--json", "--state", "succeeded", "--limit", "1",
                      "--config", str(config))  # fmt: skip
    assert [r["id"] for r in page["submissions"]] == [ids[0]]
    assert page["truncated"] is False


def test_an_outcome_the_state_column_shows_filters_the_list(config: Path, capsys: Any):
    """The state column shows a finished run's outcome: ``--state partial`` (or
    ``completed_with_errors``) lists those runs, not a usage error."""
    ids = fill(config, 3)

    async def finish(store: JobStore) -> None:
        for sub_id, outcome in ((ids[0], Outcome.PARTIAL), (ids[1], Outcome.SUCCEEDED)):
            [job] = await store.jobs_for_submission(sub_id)
            job = await store.transition_job(job.id, JobState.RUNNING, JobState.FAILED, now=NOW)
            await store.transition_job(
                job.id, job.state, job.state, now=NOW, result_state="collected"
            )
            await store.finish_submission(sub_id, outcome, now=NOW + 9, event=EventSpec("x"))

    with_store(config, finish)
    page, _ = listing(capsys, "jobs", "list", "--json", "--state", "partial", "--limit", "1",
                      "--config", str(config))  # fmt: skip
    assert [(r["id"], r["outcome"]) for r in page["submissions"]] == [(ids[0], "partial")]
    assert page["truncated"] is False
    page, _ = listing(capsys, "jobs", "list", "--json", "--state", "completed_with_errors",
                      "--config", str(config))  # fmt: skip
    assert page["submissions"] == []


def test_cancel_by_name_takes_the_run_still_open_not_merely_the_newest(config: Path, capsys: Any):
    """A name dropped again: the newer run may finish while the older one runs on. Cancel by
    name cancels the open one; with several open it names them and cancels none."""

    async def two_runs(store: JobStore) -> list[str]:
        older, _ = await accepted(store, "same.jsonl", now=NOW, sha256="a" * 64)
        newer, job = await accepted(store, "same.jsonl", now=NOW + 1, sha256="b" * 64)
        job = await store.transition_job(job.id, JobState.RUNNING, JobState.SUCCEEDED, now=NOW)
        await store.transition_job(job.id, job.state, job.state, now=NOW, result_state="collected")
        await store.finish_submission(
            newer.id, Outcome.SUCCEEDED, now=NOW + 2, event=EventSpec("x")
        )
        return [older.id, newer.id]

    older, _ = with_store(config, two_runs)
    assert run(["cancel", "--json", "same.jsonl", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == older

    third = with_store(config, lambda store: accepted(store, "same.jsonl", now=NOW + 3))[0].id
    assert run(["cancel", "same.jsonl", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "several submissions named same.jsonl are open" in err
    assert older in err and third in err and "cancel one by its id" in err


def test_a_finished_runs_progress_is_what_its_results_hold(config: Path, capsys: Any):
    """The provider counted 4 of 10 done, then lost the job: nothing came back. The list must
    not say 4/10 for a run whose results answered none (outcome failed, 10 missing)."""
    [sub_id] = fill(config, 1)

    async def lost(store: JobStore) -> None:
        [job] = await store.jobs_for_submission(sub_id)
        counts = RequestCounts(total=10, completed=4, succeeded=4)
        job = await store.transition_job(job.id, JobState.RUNNING, JobState.LOST, now=NOW,
                                         counts=counts)  # fmt: skip
        await store.transition_job(job.id, job.state, job.state, now=NOW, result_state="collected")
        await store.finish_submission(sub_id, Outcome.FAILED, now=NOW + 9, event=EventSpec("x"),
                                      results=ResultCounts(0, 0, 10))  # fmt: skip

    with_store(config, lost)
    page, _ = listing(capsys, "jobs", "list", "--json", "--config", str(config))
    [row] = page["submissions"]
    assert (row["completed"], row["succeeded"], row["missing"]) == (0, 0, 10)
    assert run(["jobs", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split("\t")[3:5] == ["failed", "0/10"]

    async def watched(store: JobStore) -> Any:
        from batchd.cli._watch import Watch

        return await Watch(store, keep_s=1e9).rows()

    [shown] = with_store(config, watched)
    assert (shown.completed, shown.requests, shown.state) == (0, 10, "failed")


def test_an_unknown_cursor_is_a_usage_error(config: Path, capsys: Any):
    fill(config, 1)
    assert run(["jobs", "list", "--cursor", "sub_nope", "--config", str(config)]) == 2
    assert "--cursor sub_nope" in capsys.readouterr().err


def test_a_bad_state_lists_the_valid_ones(config: Path, capsys: Any):
    assert run(["jobs", "list", "--state", "runing", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "'runing'" in err
    assert "submission states: claiming, claimed, active, done" in err
    assert "job states: new, uploaded, creating, pending, running" in err
    assert "outcomes: completed_with_errors, partial" in err


def test_plain_rows_when_stdout_is_not_a_terminal(config: Path, capsys: Any):
    ids = fill(config, 2)
    assert run(["jobs", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == [
        "id", "name", "route", "state", "progress", "failed", "jobs", "created",
    ]  # fmt: skip
    first = lines[1].split("\t")
    assert first[:5] == [ids[1], "f1.jsonl", "chat", "active", "0/10"]  # full values, no "…"
    assert len(lines) == 3


def test_quiet_prints_only_ids(config: Path, capsys: Any):
    ids = fill(config, 2)
    assert run(["jobs", "list", "-q", "--config", str(config)]) == 0
    assert capsys.readouterr().out.split() == ids[::-1]


def test_config_before_the_subcommand(config: Path, capsys: Any):
    ids = fill(config, 1)
    assert run(["--config", str(config), "jobs", "list", "-q"]) == 0
    assert capsys.readouterr().out.split() == ids


def test_events_list_is_newest_first_with_the_same_paging(config: Path, capsys: Any):
    async def append(store: JobStore) -> list[str]:
        return [
            (await store.append_event(EventSpec("batch.created", {"i": i}), now=NOW + i)).id
            for i in range(3)
        ]

    ids = with_store(config, append)[::-1]
    page, err = listing(capsys, "events", "list", "--json", "--limit", "2", "--config", str(config))
    assert [e["id"] for e in page["events"]] == ids[:2]
    assert (page["truncated"], page["next_cursor"]) == (True, ids[1])
    assert "more events than shown" in err
    page, _ = listing(capsys, "events", "list", "--json", "--cursor", ids[1], "--config",
                      str(config))  # fmt: skip
    assert [e["id"] for e in page["events"]] == ids[2:]
    assert run(["events", "list", "-q", "--all", "--config", str(config)]) == 0
    assert capsys.readouterr().out.split() == ids


@pytest.mark.parametrize("argv", [["-V"], ["--version"], ["version"]])
def test_version(argv: list[str], capsys: Any):
    from batchd import __version__

    with pytest.raises(SystemExit) if argv[0] != "version" else contextlib.nullcontext():
        assert run(argv) == 0
    assert capsys.readouterr().out.strip() == f"batchd {__version__}"


def test_show_and_cancel_accept_the_file_name(config: Path, capsys: Any):
    ids = fill(config, 2)
    assert run(["jobs", "show", "--json", "f0.jsonl", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == ids[0]
    assert run(["jobs", "show", "--json", "/any/inbox/f1.jsonl", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == ids[1]
    assert run(["cancel", "--json", "f1.jsonl", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["id"], shown["cancel_requested"]) == (ids[1], True)
    assert run(["jobs", "show", "nothing.jsonl", "--config", str(config)]) == 1
    assert "no submission, job or file named nothing.jsonl" in capsys.readouterr().err
