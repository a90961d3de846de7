"""``batchd submit`` shows a progress bar on a terminal while it validates a large file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchd.batchfile import PROGRESS_STEP_BYTES, FileLimits, parse_batch_file
from batchd.cli import _output
from batchd.cli._submit import validation_bar

LIMITS = FileLimits(max_file_bytes=64 * 2**20, max_line_bytes=2**20, max_lines=1_000_000)


def big_file(tmp_path: Path, lines: int = 30_000) -> Path:
    body = {"messages": [{"role": "user", "content": "x" * 60}]}
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"c{i}", "body": body}) + "\n"
                            for i in range(lines)))  # fmt: skip
    return path


def test_validation_reports_bytes_read_about_every_mib(tmp_path: Path):
    path = big_file(tmp_path)
    seen: list[int] = []
    parse_batch_file(path, endpoint="/v1/chat/completions", limits=LIMITS, progress=seen.append)
    size = path.stat().st_size
    assert len(seen) == size // PROGRESS_STEP_BYTES
    assert seen == sorted(seen) and seen[-1] <= size


def test_the_bar_is_drawn_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    with validation_bar(10, "big.jsonl") as progress:
        assert progress is None  # stderr is not a terminal here
    monkeypatch.setattr(_output, "is_terminal", lambda stream=None: True)
    monkeypatch.setattr("batchd.cli._submit.is_terminal", lambda stream=None: True)
    with validation_bar(10, "big.jsonl") as progress:
        assert progress is not None
        progress(5)
    assert "validating big.jsonl" in capsys.readouterr().err
