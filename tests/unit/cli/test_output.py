"""How commands print: tab-separated values for pipes, tables for terminals, ``NO_COLOR``."""

from __future__ import annotations

from typing import Any

import pytest

from batchd.cli import _output
from batchd.cli._output import print_rows, tsv
from batchd.cli._views import print_description

ROWS = [{"id": "sub_1", "name": "a very long name.jsonl", "note": "two\twords\nand a line"}]


def test_tsv_keeps_values_whole_and_on_one_line():
    assert tsv(ROWS, ("id", "name", "note")) == (
        "id\tname\tnote\nsub_1\ta very long name.jsonl\ttwo words and a line"
    )


def test_lists_and_none_in_cells():
    assert tsv([{"ids": ["a", None, "b"], "x": None}], ("ids", "x")) == "ids\tx\na,,b\t"


def test_quiet_prints_the_ids(capsys: Any):
    print_rows(ROWS, ("id", "name"), quiet=True)
    assert capsys.readouterr().out == "sub_1\n"


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_output, "is_terminal", lambda stream=None: True)


@pytest.mark.usefixtures("terminal")
def test_a_terminal_gets_styles_and_no_color_removes_every_escape(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    view = {"id": "sub_1", "state": "done", "jobs": []}
    monkeypatch.delenv("NO_COLOR", raising=False)
    print_description(view)
    assert "\x1b[" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    print_description(view)
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert "sub_1" in out


@pytest.mark.usefixtures("terminal")
def test_a_terminal_gets_a_table_not_tabs(capsys: Any):
    print_rows(ROWS, ("id", "name"))
    out = capsys.readouterr().out
    assert "\t" not in out
    assert "sub_1" in out


def test_a_piped_description_is_one_key_tab_value_line_each_with_values_in_full(capsys: Any):
    """``batchd jobs show REF | grep results_dir`` must see the whole path on one line, and
    token usage as words, not a Python dict folded at 80 columns."""
    folder = "/srv/batchd/done/" + "a-rather-long-folder-name-" * 4 + "x"
    view = {
        "id": "sub_1",
        "usage": {"completion_tokens": 3800, "prompt_tokens": 570, "total_tokens": 4370},
        "results_dir": folder,
        "reason": "line 1: bad\nline 2: worse",
        "jobs": [],
    }
    print_description(view)
    assert capsys.readouterr().out.splitlines() == [
        "id\tsub_1",
        "usage\tcompletion_tokens=3800 prompt_tokens=570 total_tokens=4370",
        f"results_dir\t{folder}",
        "reason\tline 1: bad line 2: worse",
    ]
