"""``batchd submit --model/--endpoint/--metadata/--timeout-hours/--allow-duplicate``: the flags
become the sidecar ``<name>.jsonl.json``, written into the inbox before the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run
from batchd.models import Submission
from batchd.store.base import JobStore

from .conftest import accepted, with_store

LINE = json.dumps({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}})
EMBED = json.dumps({"custom_id": "e", "body": {"input": "hi"}})


@pytest.fixture
def source(tmp_path: Path, config: Path) -> Path:
    (tmp_path / "spool" / "inbox").mkdir(parents=True)
    path = tmp_path / "mine.jsonl"
    path.write_text(LINE + "\n")
    return path


def inbox(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "inbox"


def test_the_flags_become_the_sidecar(tmp_path: Path, config: Path, source: Path) -> None:
    argv = ["submit", "--config", str(config), "--model", "big", "--timeout-hours", "48"]
    argv += ["--metadata", "owner=ana", "--metadata", "cost=7", str(source)]
    assert run(argv) == 0
    assert sorted(p.name for p in inbox(tmp_path).iterdir()) == ["mine.jsonl", "mine.jsonl.json"]
    assert json.loads((inbox(tmp_path) / "mine.jsonl.json").read_text()) == {
        "model": "big",
        "timeout_hours": 48,
        "metadata": {"owner": "ana", "cost": "7"},
    }


def test_without_flags_no_sidecar_is_written(tmp_path: Path, config: Path, source: Path) -> None:
    assert run(["submit", "--config", str(config), str(source)]) == 0
    assert [p.name for p in inbox(tmp_path).iterdir()] == ["mine.jsonl"]


def test_endpoint_validates_the_file_for_that_endpoint(
    tmp_path: Path, config: Path, source: Path
) -> None:
    source.write_text(EMBED + "\n")
    argv = ["submit", "--config", str(config), "--endpoint", "/v1/embeddings", str(source)]
    assert run(argv) == 0
    sidecar = json.loads((inbox(tmp_path) / "mine.jsonl.json").read_text())
    assert sidecar == {"endpoint": "/v1/embeddings"}


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--timeout-hours", "0"], "timeout_hours: Input should be greater than or equal to 1"),
        (["--metadata", "novalue"], "--metadata 'novalue': expected KEY=VALUE"),
        (["--endpoint", "/v1/nope"], "endpoint: unknown endpoint '/v1/nope'"),
        (["--metadata", "batchd_x=1"], "keys starting with batchd_ are reserved"),
    ],
)
def test_bad_flags_are_usage_errors_and_nothing_is_copied(
    tmp_path: Path, config: Path, source: Path, capsys: Any, flags: list[str], problem: str
) -> None:
    assert run(["submit", "--config", str(config), *flags, str(source)]) == 2
    assert problem in capsys.readouterr().err
    assert list(inbox(tmp_path).iterdir()) == []


def test_allow_duplicate_copies_content_that_already_ran(
    tmp_path: Path, config: Path, source: Path
) -> None:
    sha = hashlib.sha256(source.read_bytes()).hexdigest()

    async def earlier(store: JobStore) -> Submission:
        return (await accepted(store, "first.jsonl", sha256=sha))[0]

    with_store(config, earlier)
    assert run(["submit", "--config", str(config), str(source)]) == 7
    assert run(["submit", "--config", str(config), "--allow-duplicate", str(source)]) == 0
    assert json.loads((inbox(tmp_path) / "mine.jsonl.json").read_text()) == {
        "allow_duplicate": True
    }


def test_a_name_already_in_the_inbox_leaves_no_sidecar(
    tmp_path: Path, config: Path, source: Path
) -> None:
    (inbox(tmp_path) / "mine.jsonl").write_text("someone else's\n")
    assert run(["submit", "--config", str(config), "--model", "big", str(source)]) == 2
    assert [p.name for p in inbox(tmp_path).iterdir()] == ["mine.jsonl"]
