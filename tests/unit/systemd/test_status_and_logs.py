"""The ``STATUS=`` text and the choice of JSON logs for the journal."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchd.store.base import StoreStats
from batchd.systemd import (
    MAX_ERROR_CHARS,
    format_status,
    journal_stream_matches,
    prefer_json_logs,
)


def test_format_status_from_store_stats() -> None:
    stats = StoreStats(open_submissions=3, open_jobs=12, pending_downloads=1, undelivered_events=0)
    assert format_status(stats) == (
        "open jobs 12, pending downloads 1, undelivered events 0, last provider error: none"
    )


def test_format_status_with_a_provider_error_on_one_line() -> None:
    @dataclass
    class Figures:
        open_jobs: int = 0
        pending_downloads: int = 0
        undelivered_events: int = 7

    text = format_status(Figures(), last_error="mistral: HTTP 503\nService Unavailable")
    assert text == (
        "open jobs 0, pending downloads 0, undelivered events 7, "
        "last provider error: mistral: HTTP 503 Service Unavailable"
    )


def test_a_long_provider_error_is_cut() -> None:
    text = format_status(StoreStats(), last_error="x" * 1000)
    assert text.endswith("last provider error: " + "x" * MAX_ERROR_CHARS)


def test_an_empty_provider_error_reads_none() -> None:
    assert format_status(StoreStats(), last_error="").endswith("last provider error: none")


# ---------------------------------------------------------------- logs
def _stream_id(path: Path) -> tuple[io.BufferedWriter, str]:
    handle = path.open("wb")
    st = os.fstat(handle.fileno())
    return handle, f"{st.st_dev}:{st.st_ino}"


def test_journal_stream_matches_only_the_connected_stream(tmp_path: Path) -> None:
    journal, journal_id = _stream_id(tmp_path / "journal")
    other, _ = _stream_id(tmp_path / "other")
    with journal, other:
        env = {"JOURNAL_STREAM": journal_id}
        assert journal_stream_matches(env, journal.fileno()) is True
        assert journal_stream_matches(env, other.fileno()) is False
        assert journal_stream_matches({}, journal.fileno()) is False
        assert journal_stream_matches({"JOURNAL_STREAM": "8:x"}, journal.fileno()) is False


@pytest.fixture
def terminal():
    primary, secondary = os.openpty()
    stream = os.fdopen(secondary, "w")
    yield stream
    stream.close()
    os.close(primary)


def test_json_logs_when_not_a_terminal(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as stream:
        assert prefer_json_logs({}, stream) is True


def test_key_value_logs_on_a_terminal(terminal) -> None:
    assert prefer_json_logs({}, terminal) is False


def test_json_logs_when_the_terminal_is_the_journal_stream(terminal) -> None:
    st = os.fstat(terminal.fileno())
    assert prefer_json_logs({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, terminal) is True


def test_json_logs_for_a_stream_without_a_descriptor() -> None:
    assert prefer_json_logs({}, io.StringIO()) is True
