"""The daemon opens the store ``[store] url`` names (through the one opener), and a reload
cannot switch it to another store under the running loops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from batchd.config_load import load_settings
from batchd.daemon import Daemon
from tests.integration.daemon.conftest import Recorder, kinds

CONFIG = """\
[daemon]
data_dir = "{data}"
[store]
url = "{url}"
"""


async def test_the_daemon_opens_the_configured_store_and_a_reload_keeps_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "batchd.toml"
    data = tmp_path / "data"
    (data / "db").mkdir(parents=True)
    config.write_text(CONFIG.format(data=data, url="sqlite:///db/jobs.sqlite3"))
    sd = Recorder()
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False, systemd=sd)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        assert (data / "db" / "jobs.sqlite3").exists()
        assert not (data / "batchd.sqlite3").exists()

        config.write_text(CONFIG.format(data=data, url="memory://"))
        assert not await daemon.reload()
        assert daemon.settings.store.url == f"sqlite:///{data}/db/jobs.sqlite3"
        assert kinds(sd)[-2:] == ["RELOADING=1", "READY=1"]
        assert "store.url cannot change on reload" in sd.sent[-1]
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0


async def test_the_daemon_runs_on_a_memory_store(tmp_path: Path) -> None:
    config = tmp_path / "batchd.toml"
    config.write_text(CONFIG.format(data=tmp_path / "data", url="memory://"))
    daemon = Daemon(
        load_settings(config), config_path=config, install_signals=False, systemd=Recorder()
    )
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        assert daemon.runtime is not None
        assert type(daemon.runtime.store).__name__ == "MemoryJobStore"
        assert not (tmp_path / "data" / "batchd.sqlite3").exists()
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0
