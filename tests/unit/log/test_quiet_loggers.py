"""At debug level, aiosqlite's own debug lines (every SQL statement with its parameters, which
may carry user data) stay out of the log unless asked for by name (issue 13, item 6)."""

from __future__ import annotations

import io
from pathlib import Path

import aiosqlite
import pytest
import structlog

from batchd.config_load import load_settings
from batchd.log import configure_logging

CANARY = "user-data-canary-42"


async def query_through_aiosqlite(path: Path) -> None:
    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        await db.execute("INSERT INTO t VALUES (?)", (CANARY,))
        await db.commit()


async def test_aiosqlite_stays_quiet_at_debug_level(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    structlog.get_logger("batchd.test").debug("ours.debug")
    await query_through_aiosqlite(tmp_path / "db.sqlite3")
    text = stream.getvalue()
    assert "ours.debug" in text  # debug level is on for batchd
    assert CANARY not in text
    assert "aiosqlite" not in text


async def test_aiosqlite_speaks_when_named(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream, debug_loggers=["aiosqlite"])
    await query_through_aiosqlite(tmp_path / "db.sqlite3")
    assert CANARY in stream.getvalue()
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)  # a reload without the name
    await query_through_aiosqlite(tmp_path / "db.sqlite3")
    assert CANARY not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("", {}, []),
        ('[daemon]\ndebug_loggers = ["aiosqlite"]\n', {}, ["aiosqlite"]),
        (
            "",
            {"BATCHD_DAEMON__DEBUG_LOGGERS": "aiosqlite, aiohttp.client"},
            ["aiosqlite", "aiohttp.client"],
        ),
    ],
)
def test_debug_loggers_from_the_file_or_the_environment(
    tmp_path: Path, text: str, extra: dict[str, str], expected: list[str]
) -> None:
    path = tmp_path / "batchd.toml"
    path.write_text(text)
    settings = load_settings(path, environ={"HOME": str(tmp_path), **extra})
    assert settings.daemon.debug_loggers == expected
