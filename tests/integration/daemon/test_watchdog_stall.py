"""Issue 7: a stalled loop stops the watchdog pings (in-process ``Daemon``, fake notify socket).

The daemon runs for real (store, in-process emulator provider, every loop), with its timings
shrunk: ``WATCHDOG_USEC`` of 0.1 s (a ping every 0.05 s), heartbeats stale after 0.5 s, loops
beating every 0.05 s while a pass runs but only for 0.2 s of one pass, and idle loops passing
every 0.1 s. One loop's pass (the tracker's) is then made to hang: its heartbeat goes stale
and the pings stop; once it is released, they come back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from structlog.testing import capture_logs

import batchd.daemon
import batchd.loops
from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.tracker import Tracker
from tests.notify_listener import NotifyListener, is_watchdog, listening

PING_INTERVAL_S = 0.05
STALE_AFTER_S = 0.5


class Stall:
    """Makes ``Tracker.run_once`` hang while ``on`` and until ``release``."""

    def __init__(self) -> None:
        self.on = False
        self.release = asyncio.Event()


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifyListener]:
    kind: Literal["path", "abstract"] = request.param
    with listening(kind) as found:
        monkeypatch.setenv(*found.env_item)
        monkeypatch.setenv("WATCHDOG_USEC", str(int(PING_INTERVAL_S * 2 * 1_000_000)))
        yield found


@pytest.fixture
def stall(monkeypatch: pytest.MonkeyPatch) -> Stall:
    control = Stall()
    original = Tracker.run_once

    async def run_once(self: Tracker) -> int:
        if control.on:
            await control.release.wait()
        return await original(self)

    monkeypatch.setattr(Tracker, "run_once", run_once)
    monkeypatch.setattr(batchd.loops, "BEAT_EVERY_S", 0.05)
    monkeypatch.setattr(batchd.daemon, "DEFAULT_MAX_PASS_S", 0.2)
    monkeypatch.setattr(
        batchd.daemon, "run_loop", functools.partial(batchd.loops.run_loop, max_wait_s=0.1)
    )
    return control


@pytest.fixture
async def daemon(tmp_path: Path, listener: NotifyListener, stall: Stall) -> AsyncIterator[Daemon]:
    config = tmp_path / "batchd.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\nheartbeat_stale_s = {STALE_AFTER_S}\n'
        "[intake]\nscan_interval_s = 0.1\n"
    )
    running = Daemon(load_settings(config), config_path=config, install_signals=False)
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.ready.wait(), timeout=20)
    try:
        yield running
    finally:
        stall.release.set()
        running.request_stop()
        assert await asyncio.wait_for(task, timeout=20) == 0


def pings(listener: NotifyListener) -> int:
    return sum(1 for m in listener.collect() if is_watchdog(m))


async def wait_logged(logs: list[Any], event: str, timeout_s: float = 10.0) -> dict[str, Any]:
    for _ in range(int(timeout_s / 0.01)):
        for entry in logs:
            if entry["event"] == event:
                return dict(entry)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{event} not logged; got {[e['event'] for e in logs]}")


async def test_a_stalled_loop_stops_the_watchdog_pings(
    daemon: Daemon, listener: NotifyListener, stall: Stall
) -> None:
    with capture_logs() as logs:
        await listener.wait_count(is_watchdog, 5)  # every loop fresh: pings flow
        assert not [e for e in logs if e["event"] == "watchdog.stalled"]

        stall.on = True
        stalled = await wait_logged(logs, "watchdog.stalled")
        assert stalled["loops"] == ["tracker"]
        assert any(e["event"] == "loop.pass_too_long" and e["loop"] == "tracker" for e in logs)
        before = pings(listener)
        # No ping for 10 intervals (a ping already in flight may still land).
        await asyncio.sleep(PING_INTERVAL_S * 10)
        assert pings(listener) - before <= 1

        stall.on = False
        stall.release.set()
        await wait_logged(logs, "watchdog.recovered")
        after = pings(listener)
        await listener.wait_count(is_watchdog, after + 3)
