"""batchd run's event loop is uvloop's (the intake CPU figure depends on it)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from batchd import event_loop, log


def test_run_runs_the_coroutine_on_a_uvloop_loop() -> None:
    async def main() -> tuple[type[asyncio.AbstractEventLoop], int]:
        await asyncio.sleep(0)
        value = await asyncio.to_thread(lambda: 41)  # the hand-off the daemon makes most
        return type(asyncio.get_running_loop()), value + 1

    loop_type, value = event_loop.run(main())
    assert issubclass(loop_type, uvloop.Loop)
    assert value == 42


def test_batchd_run_runs_the_daemon_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchd.cli import daemon_cmd

    ran: list[str] = []

    def record(main: Coroutine[Any, Any, int]) -> int:
        ran.append(getattr(main, "__qualname__", ""))
        main.close()
        return 0

    monkeypatch.setattr(event_loop, "run", record)
    monkeypatch.setattr(log, "configure_logging", lambda **_: None)
    (tmp_path / "data").mkdir()
    config = tmp_path / "batchd.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n\n[[routes]]\nname = "chat"\n'
        f'spool = "{tmp_path / "spool"}"\nprovider = "emulator"\n'
    )
    assert daemon_cmd.cmd_run(argparse.Namespace(config=config)) == 0
    assert ran == ["Daemon.run"]
