"""No two batchd modules import each other, not even from inside a function (the dodge that
hid ``config`` <-> ``config_load``): every dependency has one direction."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The batchd modules ``path`` imports anywhere in its body; ``from pkg import sub``
    counts as importing ``pkg.sub`` only."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found & modules


def test_no_two_modules_import_each_other() -> None:
    paths = {module_name(p): p for p in (ROOT / "batchd").rglob("*.py")}
    graph = {name: imports(path, set(paths)) - {name} for name, path in paths.items()}
    mutual = sorted(
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph[b]
    )
    assert mutual == []


def test_only_the_entry_point_imports_the_cli() -> None:
    """The CLI sits on top: the daemon, the loops, the stores and the demo's engine never
    import from ``batchd.cli`` (``batchd demo`` lives in the CLI)."""
    paths = {module_name(p): p for p in (ROOT / "batchd").rglob("*.py")}
    upward = sorted(
        name
        for name, path in paths.items()
        if not name.startswith("batchd.cli") and name != "batchd.__main__"
        if any(m.startswith("batchd.cli") for m in imports(path, set(paths)))
    )
    assert upward == []
