"""Running the emulator in-process: ``async with serve(config) as emu: ... emu.url ...``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from batchd.emulator.app import build_app
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.faults import FaultConfig, FaultRule
from batchd.emulator.lifecycle import to_wire
from batchd.emulator.state import EmulatorState

log = structlog.get_logger(__name__)
SHUTDOWN_TIMEOUT_S = 2.0


class Emulator:
    """A running emulator: its URL plus control and read-only introspection."""

    def __init__(self, url: str, state: EmulatorState) -> None:
        self.url = url
        self.config = state.config
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def data_dir(self) -> Path:
        return self._state.files.root

    def now(self) -> float:
        """The current emulated time (unix seconds)."""
        return self._state.clock.now()

    def set_faults(self, faults: FaultConfig | Iterable[FaultRule]) -> None:
        config = faults if isinstance(faults, FaultConfig) else FaultConfig(tuple(faults))
        self._call(self._state.faults.set, config)

    def advance(self, seconds: float) -> None:
        """Jump emulated time forward; due transitions happen at once (result files are then
        written in the background: ``await settle()`` to wait for them)."""
        self._call(self._state.engine.advance, seconds)

    async def settle(self) -> None:
        """Wait until no input scan or result file is being worked on."""
        await self._state.engine.settle()

    def stats(self) -> dict[str, int]:
        return self._state.stats_snapshot()

    def reset_stats(self) -> None:
        self._call(self._state.reset_stats)

    def jobs(self) -> list[dict[str, Any]]:
        now = self.now()
        return [to_wire(job, now) for job in self._state.engine.jobs.values()]

    def job(self, job_id: str) -> dict[str, Any] | None:
        job = self._state.engine.jobs.get(job_id)
        return None if job is None else to_wire(job, self.now())

    def files(self) -> list[dict[str, Any]]:
        return [record.to_wire() for record in self._state.files.all()]

    def file_path(self, file_id: str) -> Path | None:
        """Where a file's content lives on disk (tests compare bytes)."""
        if not self._state.files.exists(file_id):
            return None
        return self._state.files.get(file_id).path

    def _call(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger: a request too malformed to reach the app (a bad request line or
    header; aiohttp answers 400 itself) is one line, not a traceback; anything else is kept."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            log.info("emulator.bad_http", status=exc.code, problem=exc.message[:200])
            return
        super().exception(msg, *args, **kwargs)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Emulator]:
    """Start the emulator on ``host:port`` (0 = any free port) and yield it; stop on exit."""
    config = config or EmulatorConfig()
    temp_dir = None if config.data_dir else Path(tempfile.mkdtemp(prefix="batchd-emulator-"))
    data_dir = config.data_dir or temp_dir
    assert data_dir is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    state = EmulatorState.build(config, data_dir)
    runner = web.AppRunner(
        build_app(state),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        logger=ProtocolLog(),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        state.engine.start()
        emulator = Emulator(_url(host, bound_port), state)
        log.info("emulator.started", url=emulator.url, speed=config.speed, data_dir=str(data_dir))
        yield emulator
    finally:
        await runner.cleanup()
        await state.engine.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        log.info("emulator.stopped")
