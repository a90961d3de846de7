"""Running the Anthropic emulator in-process: ``async with serve_anthropic(config) as emu:``."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from batchd.emulator.anthropic import admin, routes
from batchd.emulator.anthropic.batches import to_wire
from batchd.emulator.anthropic.middleware import MIDDLEWARES
from batchd.emulator.anthropic.state import STATE, AnthropicState
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.faults import FaultConfig, FaultRule
from batchd.emulator.server import SHUTDOWN_TIMEOUT_S, ProtocolLog

log = structlog.get_logger(__name__)
MAX_BODY_BYTES = 256 * 1024 * 1024 + 1024 * 1024  # 256 MB of requests, plus the envelope


def build_app(state: AnthropicState) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_BODY_BYTES)
    app[STATE] = state
    app.add_routes(routes.routes)
    app.add_routes(admin.routes)
    return app


class AnthropicEmulator:
    """A running Anthropic emulator: its URL plus control and read-only introspection."""

    def __init__(self, url: str, state: AnthropicState) -> None:
        self.url = url
        self.config = state.config
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def now(self) -> float:
        return self._state.clock.now()

    def set_faults(self, faults: FaultConfig | Iterable[FaultRule]) -> None:
        config = faults if isinstance(faults, FaultConfig) else FaultConfig(tuple(faults))
        self._call(self._state.faults.set, config)

    def advance(self, seconds: float) -> None:
        """Jump emulated time forward (``await settle()`` for the results files)."""
        self._call(self._state.engine.advance, seconds)

    async def settle(self) -> None:
        await self._state.engine.settle()

    def stats(self) -> dict[str, int]:
        return self._state.stats_snapshot()

    def batches(self) -> list[dict[str, Any]]:
        """Every batch (of every key), oldest first, as the API shows them."""
        engine = self._state.engine
        engine.catch_up()
        return [to_wire(b, self.url) for b in engine.batches.values()]

    def _call(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve_anthropic(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[AnthropicEmulator]:
    """Start the emulator on ``host:port`` (0 = any free port) and yield it; stop on exit."""
    config = config or EmulatorConfig()
    temp_dir = None if config.data_dir else Path(tempfile.mkdtemp(prefix="batchd-anthropic-"))
    data_dir = config.data_dir or temp_dir
    assert data_dir is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    state = AnthropicState.build(config, data_dir)
    runner = web.AppRunner(
        build_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, logger=ProtocolLog()
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        state.base_url = _url(host, runner.addresses[0][1])
        state.engine.start()
        emulator = AnthropicEmulator(state.base_url, state)
        log.info("emulator.started", provider="anthropic", url=emulator.url, speed=config.speed)
        yield emulator
    finally:
        await runner.cleanup()
        await state.engine.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        log.info("emulator.stopped", provider="anthropic")
