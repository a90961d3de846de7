"""``[store] url``: every command opens the store it names (not the default file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run
from batchd.store.base import JobStore

from .conftest import accepted, with_store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "batchd.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{data}"\n\n[store]\nurl = "sqlite:///stores/jobs.sqlite3"\n\n'
        f'[[routes]]\nname = "chat"\nspool = "{tmp_path / "spool"}"\nprovider = "emulator"\n'
    )
    (data / "stores").mkdir()
    return path


def test_the_commands_read_the_configured_store(config: Path, capsys: Any) -> None:
    async def fill(store: JobStore) -> str:
        return (await accepted(store, "a.jsonl"))[0].id

    sub_id = with_store(config, fill)
    data = config.parent / "data"
    assert (data / "stores" / "jobs.sqlite3").exists()
    assert not (data / "batchd.sqlite3").exists()

    assert run(["jobs", "list", "--json", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in listed["submissions"]] == [sub_id]

    assert run(["status", "--json", "--config", str(config)]) == 4  # one open submission
    assert json.loads(capsys.readouterr().out)["open_submissions"] == 1

    run(["check", "--json", "--config", str(config)])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["database"]["detail"] == str(data / "stores" / "jobs.sqlite3")


def test_check_names_a_configured_store_not_created_yet(config: Path, capsys: Any) -> None:
    run(["check", "--json", "--config", str(config)])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    detail = checks["database"]["detail"]
    assert detail.startswith(str(config.parent / "data" / "stores" / "jobs.sqlite3"))
    assert "not created yet" in detail
