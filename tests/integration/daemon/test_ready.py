"""READY=1 only once the daemon can work: database open and migrated, credentials read, the
first inbox scan (with the finishing of half-done claims) done."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import batchd.daemon
from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.intake import Intake
from tests.integration.daemon.conftest import Recorder, kinds


async def test_ready_waits_for_the_first_inbox_scan_and_the_start_timeout_is_extended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batchd.daemon, "EXTEND_START_S", 0.3)
    config = tmp_path / "batchd.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n')
    scanning, release = asyncio.Event(), asyncio.Event()
    original = Intake.run_once

    async def first_scan_takes_a_while(self: Intake) -> int:
        if not release.is_set():
            scanning.set()
            await release.wait()
        return await original(self)

    monkeypatch.setattr(Intake, "run_once", first_scan_takes_a_while)
    sd = Recorder()
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False, systemd=sd)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(scanning.wait(), timeout=30)
        assert (tmp_path / "data" / "batchd.sqlite3").exists()  # the store is open by now
        await asyncio.sleep(0.35)
        assert "READY=1" not in kinds(sd)
        extended = [m for m in sd.sent if m.startswith("EXTEND_TIMEOUT_USEC=")]
        assert len(extended) >= 2  # kept ahead while the long first scan runs
        assert set(extended) == {"EXTEND_TIMEOUT_USEC=300000"}
        assert not daemon.ready.is_set()
        release.set()
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        assert kinds(sd) == ["READY=1"]
    finally:
        release.set()
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0
