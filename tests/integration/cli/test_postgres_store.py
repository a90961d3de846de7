"""The commands on a PostgreSQL store (``[store] url = "postgresql://..."``): ``batchd check``
reports the database (reachable, schema version, clock skew), and the store password (from
``$CREDENTIALS_DIRECTORY/store_password``) never shows in any output, log, error or row."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from batchd.cli import run
from batchd.store.base import JobStore
from batchd.store.postgres_migrate import load_migrations
from tests.postgres_schema import fresh_schema

from .conftest import accepted, with_store


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("cli") as url:
        yield url


def write(tmp_path: Path, url: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "batchd.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{data}"\n\n[store]\nurl = "{url}"\n\n'
        f'[[routes]]\nname = "chat"\nspool = "{tmp_path / "spool"}"\nprovider = "emulator"\n'
    )
    return path


def database_check(capsys: Any, config: Path) -> tuple[int, dict[str, Any]]:
    code = run(["check", "--json", "--config", str(config)])
    doc = json.loads(capsys.readouterr().out)
    return code, next(c for c in doc["checks"] if c["check"] == "database")


def test_check_reports_schema_and_clock_skew(tmp_path: Path, pg_url: str, capsys: Any) -> None:
    config = write(tmp_path, pg_url)
    with_store(config, lambda store: accepted(store, "a.jsonl"))
    _, found = database_check(capsys, config)
    assert found["ok"] is True
    latest = len(load_migrations())
    assert found["detail"].startswith(
        f"postgresql://postgres@127.0.0.1:5432/test (schema {latest}, "
    )
    assert "clock skew" in found["detail"]
    assert "search_path" not in found["detail"]  # the URL's options are not shown


def test_check_on_a_schema_not_migrated_yet(tmp_path: Path, pg_url: str, capsys: Any) -> None:
    _, found = database_check(capsys, write(tmp_path, pg_url))
    assert found["ok"] is True
    assert "schema 0: batchd run migrates it" in found["detail"]


def test_check_fails_on_an_unreachable_server(tmp_path: Path, capsys: Any) -> None:
    config = write(tmp_path, "postgresql://batchd@127.0.0.1:1/none?connect_timeout=2")
    code, found = database_check(capsys, config)
    assert (code, found["ok"]) == (3, False)
    assert "cannot connect to the database postgresql://batchd@127.0.0.1:1/none" in found["detail"]


def test_the_store_password_never_shows(
    tmp_path: Path, pg_url: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "PGCANARY" + secrets.token_hex(12)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "store_password").write_text(canary + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = write(tmp_path, pg_url)
    dead = write(tmp_path / "dead", "postgresql://batchd@127.0.0.1:1/none?connect_timeout=2")

    async def fill(store: JobStore) -> None:
        await accepted(store, "a.jsonl")

    seen: list[str] = []
    with capture_logs() as logs:
        with_store(config, fill)
        for argv in (
            ["check", "--config", str(config)],
            ["check", "--json", "--config", str(config)],
            ["check", "--config", str(dead)],
            ["jobs", "list", "--json", "--config", str(config)],
            ["jobs", "list", "--config", str(dead)],
            ["status", "--config", str(config)],
        ):
            run(argv)
            captured = capsys.readouterr()
            seen += [captured.out, captured.err]
    seen.append(json.dumps(logs, default=str))
    with psycopg.connect(pg_url) as conn:  # every row of every table, as text
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        for (table,) in tables:
            seen += [str(r) for r in conn.execute(f'SELECT t::text FROM "{table}" t')]
    assert any("a.jsonl" in text for text in seen)  # the outputs were captured
    assert not [text for text in seen if canary in text]
