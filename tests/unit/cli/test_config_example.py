"""``batchd config example`` prints the annotated configuration shipped as package data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchd.cli import run

REPO_EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "batchd.toml"


def test_it_prints_the_shipped_example(capsys: Any):
    assert run(["config", "example"]) == 0
    out = capsys.readouterr().out
    assert out == REPO_EXAMPLE.read_text()
    assert "submission.done" not in out  # the old comment suggested an event that does not exist


def test_the_example_is_package_data():
    import tomllib

    pyproject = tomllib.loads((REPO_EXAMPLE.parents[1] / "pyproject.toml").read_text())
    assert "config_example.toml" in pyproject["tool"]["setuptools"]["package-data"]["batchd"]


def test_help_points_there(capsys: Any):
    from batchd.cli import build_parser

    assert "batchd config example" in build_parser().format_help()
