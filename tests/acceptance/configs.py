"""Daemon configuration files for the acceptance tier: fast timings, one ``mistral`` provider
pointing at the emulator process, routes with spools under the test's folder.

``daemon_config(...)`` builds the document as plain dicts (override any key per test) and
``dump_toml`` writes it; only what batchd's configuration uses is supported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER = "mistral"
MODEL = "mistral-small-latest"


@dataclass(frozen=True)
class RouteSpec:
    name: str
    endpoint: str = "/v1/chat/completions"
    model: str | None = MODEL
    timeout_hours: int = 24
    provider: str = PROVIDER
    metadata: Mapping[str, str] = field(default_factory=dict)


# Fast timings: everything a test waits for happens within a second or two.
FAST: dict[str, dict[str, Any]] = {
    "daemon": {"log_level": "info", "log_format": "json"},
    "intake": {"scan_interval_s": 1.0, "min_age_s": 1.0},
    "submit": {
        "retry_base_s": 0.2,
        "retry_max_s": 1.0,
        "reconcile_delay_s": 0.2,
        "reconcile_window_s": 1.0,  # with timeout_s: an ambiguous create waits 11 s at most
    },
    "track": {"poll_initial_s": 0.2, "poll_max_s": 0.5, "rate_limit_slowdown_s": 0.5},
    "collect": {"retry_base_s": 0.2, "retry_max_s": 1.0},
}
FAST_PROVIDER: dict[str, Any] = {
    "kind": "mistral",
    "requests_per_second": 0,
    "timeout_s": 10.0,
    "connect_timeout_s": 2.0,
    "read_retries": 3,
    "retry_base_s": 0.05,
    "retry_max_s": 0.2,
    "retry_after_max_s": 1.0,
}


def daemon_config(
    *,
    data_dir: Path,
    spool_root: Path,
    emulator_url: str,
    routes: Sequence[RouteSpec],
    provider: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """The configuration document; ``sections`` (``intake={...}``) override keys of FAST."""
    doc: dict[str, Any] = {name: dict(values) for name, values in FAST.items()}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    doc["daemon"]["data_dir"] = str(data_dir)
    doc["providers"] = {
        PROVIDER: {**FAST_PROVIDER, "base_url": emulator_url, **(provider or {})},
    }
    doc["routes"] = [route_table(route, spool_root) for route in routes]
    return doc


def route_table(route: RouteSpec, spool_root: Path) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": route.name,
        "spool": str(spool_root / route.name),
        "provider": route.provider,
        "endpoint": route.endpoint,
        "timeout_hours": route.timeout_hours,
        "metadata": dict(route.metadata),
    }
    if route.model is not None:
        table["model"] = route.model
    return table


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(header: str, values: Mapping[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_value(v)}" for key, v in values.items()), ""]


def dump_toml(doc: Mapping[str, Any]) -> str:
    """Sections as tables, ``providers`` as ``[providers.<name>]``, ``routes``, ``webhooks``
    and ``sources`` as arrays of tables."""
    lines: list[str] = []
    for name, values in doc.items():
        if name == "providers":
            for provider, table in values.items():
                lines += _table(f"[providers.{provider}]", table)
        elif name in {"routes", "webhooks", "sources"}:
            for table in values:
                lines += _table(f"[[{name}]]", table)
        else:
            lines += _table(f"[{name}]", values)
    return "\n".join(lines)


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    path.write_text(dump_toml(doc))
    return path
