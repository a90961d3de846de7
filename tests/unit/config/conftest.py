from __future__ import annotations

from pathlib import Path

import pytest

from batchd import config_load


@pytest.fixture(autouse=True)
def _no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read a real /etc/batchd/batchd.toml from the machine running the tests."""
    monkeypatch.setattr(config_load, "DEFAULT_CONFIG_PATH", tmp_path / "absent" / "batchd.toml")
