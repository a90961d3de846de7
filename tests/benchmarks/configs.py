"""The batchd configuration each scenario runs with: a user's file, defaults unless stated.

Every scenario writes its configuration with ``write_config`` and records ``overrides`` (the
keys that differ from the defaults in ``config/batchd.toml``) in the report, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.procs import API_KEY_ENV

PROVIDER = "mistral"
ROUTE = "bench"
MODEL = "mistral-small-latest"
ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class Override:
    key: str  # dotted: "submit.concurrency", "providers.mistral.requests_per_second"
    value: Any
    why: str


@dataclass(frozen=True)
class BatchdSetup:
    """Where one daemon lives and what it differs in from the defaults."""

    root: Path
    emulator_url: str
    overrides: tuple[Override, ...] = field(default_factory=tuple)

    @property
    def data_dir(self) -> Path:
        return self.root / "state"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def config_path(self) -> Path:
        return self.root / "batchd.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "batchd.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.root / "batchd.log"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(setup: BatchdSetup) -> str:
    """The TOML text: the required keys (where things are), then the overrides."""
    sections: dict[str, dict[str, Any]] = {
        "daemon": {"data_dir": str(setup.data_dir), "log_format": "json"},
        "intake": {},
        "submit": {},
        "track": {},
        "collect": {},
        f"providers.{PROVIDER}": {
            "kind": "mistral",
            "base_url": setup.emulator_url,
            "api_key_env": API_KEY_ENV,
        },
    }
    for item in setup.overrides:
        section, _, key = item.key.rpartition(".")
        sections.setdefault(section, {})[key] = item.value
    lines = ["# written by tests/benchmarks; every key not named here has its default"]
    for name, values in sections.items():
        if values:
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    lines += [
        "\n[[routes]]",
        f'name = "{ROUTE}"',
        f"spool = {_toml(setup.spool)}",
        f'provider = "{PROVIDER}"',
        f'endpoint = "{ENDPOINT}"',
        f'model = "{MODEL}"',
    ]
    return "\n".join(lines) + "\n"


def write_config(setup: BatchdSetup) -> Path:
    setup.root.mkdir(parents=True, exist_ok=True)
    setup.config_path.write_text(render(setup))
    return setup.config_path


def describe(overrides: tuple[Override, ...]) -> list[dict[str, Any]]:
    return [{"key": o.key, "value": o.value, "why": o.why} for o in overrides]


# ---------------------------------------------------------------------- the scenarios' settings

BULK_LOAD = (
    Override(
        f"providers.{PROVIDER}.requests_per_second",
        0.0,
        "the default client-side limit (5 req/s) caps intake at 2.5 files/s (upload + create "
        "per file), a third of the sequential script's rate; a bulk load sets its account's "
        "limit, and the emulator has none",
    ),
    Override(
        "submit.concurrency",
        32,
        "uploads and creates in flight at once; with ~60 ms per call, the default 4 caps "
        "intake near 30 files/s",
    ),
)


def scaled_timers(speed: float) -> tuple[Override, ...]:
    """Poll timers in emulated seconds: the emulator runs ``speed`` times as fast, and the
    script's ``sleep(60)`` is scaled by the same factor."""
    why = f"default divided by the emulator speed ({speed:g}x), like the script's sleep(60)"
    return (
        Override("track.poll_initial_s", round(5.0 / speed, 4), why),
        Override("track.poll_max_s", round(300.0 / speed, 4), why),
        Override("collect.retry_base_s", round(5.0 / speed, 4), why),
    )
