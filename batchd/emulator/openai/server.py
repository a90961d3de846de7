"""Running the OpenAI emulator in-process: ``async with serve_openai(config) as emu: ...``."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.config import EmulatorConfig
from batchd.emulator.faults import FaultInjector
from batchd.emulator.files import FileStore
from batchd.emulator.openai.app import HEADERS_SEEN, build_app
from batchd.emulator.openai.engine import OpenAIEngine, OpenAIOptions
from batchd.emulator.openai.wire import file_to_wire
from batchd.emulator.server import SHUTDOWN_TIMEOUT_S, Emulator, ProtocolLog
from batchd.emulator.state import EmulatorState, UrlSigner

log = structlog.get_logger(__name__)


class OpenAIEmulator(Emulator):
    """A running OpenAI emulator: the shared handle, with OpenAI's objects."""

    def __init__(self, url: str, state: EmulatorState, app: web.Application) -> None:
        super().__init__(url, state)
        assert isinstance(state.engine, OpenAIEngine)
        self.engine: OpenAIEngine = state.engine
        self._app = app

    def jobs(self) -> list[dict[str, Any]]:
        return [self.engine.to_wire(job) for job in self.engine.jobs.values()]

    def job(self, job_id: str) -> dict[str, Any] | None:
        job = self.engine.jobs.get(job_id)
        return None if job is None else self.engine.to_wire(job)

    def files(self) -> list[dict[str, Any]]:
        return [file_to_wire(record) for record in self._state.files.all()]

    def headers_seen(self) -> dict[tuple[str, str], int]:
        """``(header, value)`` -> requests, for ``OpenAI-Organization`` / ``OpenAI-Project``."""
        seen: Counter[tuple[str, str]] = self._app[HEADERS_SEEN]
        return dict(seen)


def build_state(config: EmulatorConfig, data_dir: Path, options: OpenAIOptions) -> EmulatorState:
    clock = EmulatedClock(config.speed)
    ids = IdFactory(config.seed)
    files = FileStore(data_dir, clock, ids, config.behaviour.max_upload_bytes)
    faults = FaultInjector(config.faults, default_seed=config.seed)
    engine = OpenAIEngine(config, clock, ids, files, faults, options=options)
    return EmulatorState(config, clock, files, engine, faults, UrlSigner(config.seed))


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve_openai(
    config: EmulatorConfig | None = None,
    *,
    options: OpenAIOptions | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[OpenAIEmulator]:
    """Start the OpenAI emulator on ``host:port`` (0 = any free port); its base URL for the SDK
    is ``emu.url + "/v1"``. Stops on exit."""
    config = config or EmulatorConfig()
    temp_dir = None if config.data_dir else Path(tempfile.mkdtemp(prefix="batchd-openai-"))
    data_dir = config.data_dir or temp_dir
    assert data_dir is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    state = build_state(config, data_dir, options or OpenAIOptions())
    app = build_app(state)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, logger=ProtocolLog()
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        state.engine.start()
        emulator = OpenAIEmulator(_url(host, runner.addresses[0][1]), state, app)
        log.info("emulator.started", provider="openai", url=emulator.url, speed=config.speed)
        yield emulator
    finally:
        await runner.cleanup()
        await state.engine.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        log.info("emulator.stopped", provider="openai")
