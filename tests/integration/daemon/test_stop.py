"""A requested stop always ends the daemon with exit code 0 (in-process ``Daemon``).

Regression: the daemon's stop watcher and every loop task wait on the same event, so a loop
whose pass ended right at the stop finished before the watcher woke the daemon, and was
reported as a dead loop (``daemon.loop_died`` with no error, exit code 1). With the real
process this happened on about one SIGTERM in five; here a pass requests the stop itself, which
makes the race certain.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from batchd.collector import Collector
from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.store.base import EventSpec
from batchd.tracker import Tracker
from batchd.webhooks.signing import new_secret


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


async def test_a_stop_with_a_stuck_pass_and_a_hanging_receiver_ends_within_10_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        received.set()
        await release.wait()  # a receiver that does not answer (until the test ends)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("BATCHD_TEST_HOOK_SECRET", new_secret())
    config = tmp_path / "batchd.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
        "[[webhooks]]\n"
        'name = "stuck"\n'
        f'url = "http://127.0.0.1:{port}/hook"\n'
        'secret_env = "BATCHD_TEST_HOOK_SECRET"\n'
        "allow_http = true\nallow_private = true\ntimeout_s = 60\n"
    )
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False)
    stuck = asyncio.Event()

    async def never_ending_pass(self: Collector) -> int:
        stuck.set()
        await asyncio.sleep(120)  # e.g. a download that will not finish in time
        return 0

    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        monkeypatch.setattr(Collector, "run_once", never_ending_pass)
        assert daemon.runtime is not None
        await daemon.runtime.store.append_event(EventSpec("test.stop"), now=time.time())
        daemon.runtime.notifier.wake()
        daemon.runtime.collector.wake()
        await asyncio.wait_for(received.wait(), timeout=30)
        await asyncio.wait_for(stuck.wait(), timeout=30)
        began = time.monotonic()
        daemon.request_stop()
        code = await asyncio.wait_for(task, timeout=30)
        took = time.monotonic() - began
    finally:
        release.set()
        await runner.cleanup()
    assert code == 0
    assert took < 9.0, f"the stop took {took:.1f} s"
