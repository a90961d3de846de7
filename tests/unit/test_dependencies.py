"""Every runtime dependency declared in pyproject.toml is imported by batchd (none is dead
weight to install, audit and keep up to date)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0] for spec in project["dependencies"]]


def imported_modules() -> set[str]:
    found: set[str] = set()
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
    for path in (ROOT / "batchd").rglob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_declared_dependency_is_imported() -> None:
    modules = imported_modules()
    unused = [name for name in declared() if name.replace("-", "_").lower() not in modules]
    assert unused == [], f"declared in pyproject.toml but never imported by batchd: {unused}"
