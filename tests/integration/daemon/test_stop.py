"""A requested stop always ends the daemon with exit code 0 (in-process ``Daemon``).

Regression: the daemon's stop watcher and every loop task wait on the same event, so a loop
whose pass ended right at the stop finished before the watcher woke the daemon, and was
reported as a dead loop (``daemon.loop_died`` with no error, exit code 1). With the real
process this happened on about one SIGTERM in five; here a pass requests the stop itself, which
makes the race certain.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from batchd.config import load_settings
from batchd.daemon import Daemon
from batchd.tracker import Tracker


async def test_a_stop_requested_during_a_pass_exits_0_with_no_dead_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "batchd.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n')
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False)
    original = Tracker.run_once

    async def run_once(self: Tracker) -> int:
        if daemon.ready.is_set():
            daemon.request_stop()  # as a SIGTERM landing just as this pass ends
            return 0
        return await original(self)

    monkeypatch.setattr(Tracker, "run_once", run_once)
    with capture_logs() as logs:
        code = await asyncio.wait_for(daemon.run(), timeout=30)
    assert code == 0
    assert [e for e in logs if e["event"] == "daemon.loop_died"] == []
    assert [e["event"] for e in logs if e["event"].startswith("daemon.")][-1] == "daemon.stopped"
