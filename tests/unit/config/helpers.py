from __future__ import annotations

from pathlib import Path

import pytest

from batchd.config import Settings
from batchd.config_load import load_settings
from batchd.errors import ConfigError


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), **extra}


def write(tmp_path: Path, text: str, name: str = "batchd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, **extra: str) -> Settings:
    return load_settings(write(tmp_path, text), environ=env(tmp_path, **extra))


def problems(tmp_path: Path, text: str, **extra: str) -> list[tuple[str, str]]:
    """(source, dotted key) of each line of the ConfigError."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **extra)
    return [tuple(line.split(": ", 2)[:2]) for line in str(info.value).splitlines()]  # type: ignore[misc]


def error_text(tmp_path: Path, text: str, **extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **extra)
    return str(info.value)
