"""``batchd submit`` without a daemon: a duplicate is refused before the copy with the daemon's
reason and exit code, ``--json``, ``--wait-timeout``; the exit code of each outcome."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run
from batchd.cli._submit import exit_code
from batchd.models import Outcome, Submission, SubmissionState
from batchd.store.base import JobStore

from .conftest import accepted, with_store

LINE = json.dumps({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}})
EXIT_REJECTED, EXIT_WAIT_TIMEOUT = 7, 9


@pytest.fixture
def source(tmp_path: Path, config: Path) -> Path:
    (tmp_path / "spool" / "inbox").mkdir(parents=True)
    path = tmp_path / "mine.jsonl"
    path.write_text(LINE + "\n")
    return path


def inbox(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "spool" / "inbox").iterdir())


def test_content_batchd_already_runs_is_refused_before_the_copy(
    tmp_path: Path, config: Path, source: Path, capsys: Any
):
    sha = hashlib.sha256(source.read_bytes()).hexdigest()

    async def earlier(store: JobStore) -> Submission:
        return (await accepted(store, "first.jsonl", sha256=sha))[0]

    first = with_store(config, earlier)
    assert run(["submit", "--config", str(config), str(source)]) == EXIT_REJECTED
    err = capsys.readouterr().err
    assert f"duplicate: the same content was submitted as first.jsonl (submission {first.id}" in err
    assert "mine.jsonl is a duplicate:" in err and "not a valid batch file" not in err
    assert "batchd submit --allow-duplicate" in err  # the per-file way round it, not only [intake]
    assert run(["submit", "--allow-duplicate", "--config", str(config), str(source)]) == 0
    assert inbox(tmp_path) == ["mine.jsonl", "mine.jsonl.json"]
    capsys.readouterr()
    for name in inbox(tmp_path):
        (tmp_path / "spool" / "inbox" / name).unlink()
    assert inbox(tmp_path) == []
    assert run(["submit", "--no-validate", "--json", "--config", str(config), str(source)]) == 7
    shown = json.loads(capsys.readouterr().out)
    assert shown["rejected"] is True and "duplicate" in shown["reason"][0]
    assert inbox(tmp_path) == []


def test_an_invalid_file_is_rejected_with_exit_7(
    tmp_path: Path, config: Path, source: Path, capsys: Any
):
    source.write_text('{"custom_id": "a"}\n')
    assert run(["submit", "--config", str(config), str(source)]) == EXIT_REJECTED
    assert "is not a valid batch file" in capsys.readouterr().err
    assert inbox(tmp_path) == []


def test_json_names_the_copy(tmp_path: Path, config: Path, source: Path, capsys: Any):
    argv = ["submit", "--json", "--as", "other.jsonl", "--config", str(config)]
    assert run([*argv, str(source)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": str(tmp_path / "spool" / "inbox" / "other.jsonl"),
        "route": "chat",
        "name": "other.jsonl",
    }
    assert inbox(tmp_path) == ["other.jsonl"]


def test_wait_gives_up_after_its_timeout(tmp_path: Path, config: Path, source: Path, capsys: Any):
    argv = ["submit", "--wait", "--wait-timeout", "0.2", "--json", "--config", str(config)]
    assert run([*argv, str(source)]) == EXIT_WAIT_TIMEOUT
    assert json.loads(capsys.readouterr().out)["finished"] is False
    assert inbox(tmp_path) == ["mine.jsonl"]  # the file stays submitted


def done(outcome: Outcome | None, state: SubmissionState = SubmissionState.DONE) -> Submission:
    return Submission("sub_1", "r", "a.jsonl", state, "p", "/v1/chat/completions", None, 24,
                      outcome=outcome)  # fmt: skip


def test_exit_codes_by_outcome():
    assert [exit_code(done(o)) for o in Outcome] == [
        {"succeeded": 0, "completed_with_errors": 4, "partial": 5, "failed": 6, "cancelled": 8}[o]
        for o in Outcome
    ]
    assert exit_code(done(None, SubmissionState.REJECTED)) == EXIT_REJECTED
    assert exit_code(done(None, SubmissionState.ABANDONED)) == EXIT_REJECTED


def test_without_the_daemons_database_the_duplicate_check_says_it_was_skipped(
    tmp_path: Path, config: Path, source: Path, capsys: Any
):
    """A wrong --config or data_dir used to skip the check in silence, and --wait then waited
    for nothing: both say which database they looked for."""
    assert run(["submit", "--config", str(config), str(source)]) == 0
    err = capsys.readouterr().err
    assert "duplicate check skipped: there is no database at sqlite:///" in err
    assert inbox(tmp_path) == ["mine.jsonl"]


def test_a_database_this_user_cannot_read_skips_the_check_and_refuses_to_wait(
    tmp_path: Path, config: Path, source: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
):
    """Under systemd the data folder is private to batchd: a member of the spool's group can
    submit (the daemon checks duplicates when it claims the file) but never see the outcome."""
    from batchd.store import registry

    with_store(config, lambda store: accepted(store, "other.jsonl"))  # the database exists

    def denied(url: str) -> bool:
        raise PermissionError(13, "Permission denied", url)

    monkeypatch.setattr(registry, "store_exists", denied)
    assert run(["submit", "--as", "a.jsonl", "--config", str(config), str(source)]) == 0
    err = capsys.readouterr().err
    assert "duplicate check skipped: this user cannot read the database" in err
    assert "(Permission denied)" in err
    argv = ["submit", "--as", "b.jsonl", "--wait", "--wait-timeout", "30", "--config"]
    assert run([*argv, str(config), str(source)]) == 1
    err = capsys.readouterr().err
    assert "cannot wait: this user cannot read the database" in err
    assert "b.jsonl was submitted and carries on" in err
    assert inbox(tmp_path) == ["a.jsonl", "b.jsonl"]


def test_a_route_without_a_spool_is_refused_saying_why(tmp_path: Path, config: Path, capsys: Any):
    config.write_text(config.read_text() + '\n[[routes]]\nname = "queued"\nprovider = "emulator"\n')
    path = tmp_path / "mine.jsonl"
    path.write_text(LINE + "\n")
    assert run(["submit", "--route", "queued", "--config", str(config), str(path)]) == 2
    err = capsys.readouterr().err
    assert "route 'queued' has no spool (it is fed by another source)" in err
