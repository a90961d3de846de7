"""The store seam holds: outside ``batchd/store/`` nothing names a store implementation or its
schema bookkeeping; everything holds a ``JobStore`` built by ``registry.make_store``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "batchd"
IMPLEMENTATION = re.compile(
    r"SqliteJobStore|MemoryJobStore|batchd\.store\.(sqlite|memory|migrate)"
    r"|PRAGMA|user_version|json_valid"
)


def test_nothing_outside_the_store_names_an_implementation_or_its_migrations() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] != "store"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if IMPLEMENTATION.search(line)
    ]
    assert found == []
