"""The API server inside the daemon: one aiohttp application on every ``[api] listen`` address.

Started by the daemon after the store is open and before ``READY=1``; stopped before the store
closes. Requests are answered from the store (the loops' source of truth); the server never
changes a job itself: it writes the inbox (``uploads.py``) and records cancel requests, like
the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Final

import structlog
from aiohttp import web

from batchd.api import dashboard, events, metrics_route, openapi, submissions, uploads
from batchd.api.auth import load_tokens
from batchd.api.context import CTX, PRINCIPAL, PUBLIC, ApiContext
from batchd.api.ledger import Ledger
from batchd.api.problems import Handler, Problem, problems_middleware
from batchd.clock import Clock
from batchd.config import Settings
from batchd.config_api import UNIX_PREFIX
from batchd.credentials import CREDENTIALS_DIRECTORY
from batchd.wiring import Runtime

log = structlog.get_logger(__name__)

SHUTDOWN_S: Final = 1.0
STREAMS: Final = frozenset({"/v1/events/stream"})
MAX_HEADER_BYTES: Final = 16 * 1024


def tokens_path(tokens_file: Path | None, credential: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<credential>`` when present, else ``[api] tokens_file``."""
    directory = os.environ.get(CREDENTIALS_DIRECTORY)
    if directory and (Path(directory) / credential).exists():
        return Path(directory) / credential
    return tokens_file


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC:
        request[PRINCIPAL] = request.app[CTX].principal(request)
    if request.path in STREAMS:
        return await handler(request)
    try:
        async with asyncio.timeout(request.app[CTX].settings.api.request_timeout_s):
            return await handler(request)
    except TimeoutError:
        raise Problem(408, "the request took longer than api.request_timeout_s") from None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "up"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        await ctx.store.stats()
    except Exception as exc:
        raise Problem(503, f"the store does not answer ({type(exc).__name__})") from None
    import time

    stale = ctx.heartbeats.stale(time.monotonic(), ctx.settings.daemon.heartbeat_stale_s)
    if stale:
        raise Problem(503, f"loops not beating: {', '.join(stale)}", stale_loops=stale)
    return web.json_response({"status": "ready", "loops": ctx.heartbeats.names})


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(
        middlewares=[problems_middleware, auth_middleware],
        client_max_size=ctx.settings.api.max_upload_bytes,
        handler_args={"max_field_size": MAX_HEADER_BYTES, "max_line_size": MAX_HEADER_BYTES},
    )
    app[CTX] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_post("/v1/submissions", uploads.post_submission)
    submissions.add_routes(app)
    events.add_routes(app)
    metrics_route.add_routes(app)
    dashboard.add_routes(app)
    return app


class ApiServer:
    """Serves ``build_app(ctx)`` on the configured addresses until ``stop()``."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._runner: web.AppRunner | None = None
        self.addresses: list[str] = []

    async def start(self) -> None:
        api = self.ctx.settings.api
        self.ctx.ledger.load()
        self.ctx.tokens = load_tokens(tokens_path(api.tokens_file, api.tokens_credential))
        self.ctx.uploads = asyncio.Semaphore(api.max_concurrent_uploads)
        runner = web.AppRunner(build_app(self.ctx), access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        self._runner = runner
        for address in api.listen:
            await self._site(runner, address).start()
            if address.startswith(UNIX_PREFIX):  # anyone may connect: each request is
                # authorised by its caller's uid and groups
                os.chmod(address.removeprefix(UNIX_PREFIX), api.socket_mode)
            self.addresses.append(address)
        log.info("api.listening", addresses=self.addresses, tokens=len(self.ctx.tokens))

    @staticmethod
    def _site(runner: web.AppRunner, address: str) -> web.BaseSite:
        if address.startswith(UNIX_PREFIX):
            path = Path(address.removeprefix(UNIX_PREFIX))
            _clear_stale_socket(path)
            return web.UnixSite(runner, str(path))
        host, _, port = address.rpartition(":")
        return web.TCPSite(runner, host.strip("[]"), int(port))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for path in self.ctx.settings.api.unix_paths():
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()


def _clear_stale_socket(path: Path) -> None:
    """A socket left by a killed daemon is removed (the data folder's lock says we are alone);
    anything else at that path is a configuration error."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        from batchd.errors import ConfigError

        raise ConfigError(f"api.listen: {path} exists and is not a socket")
    path.unlink()


async def start_api(settings: Settings, runtime: Runtime, clock: Clock) -> ApiServer | None:
    """The daemon's hook: the API over the runtime's store and loops (None: ``listen`` empty)."""
    if not settings.api.listen:
        return None
    intake = runtime.sources[0]
    ctx = ApiContext(
        store=runtime.store,
        settings=settings,
        clock=clock,
        heartbeats=runtime.heartbeats,
        ledger=Ledger(settings.daemon.data_dir / "api" / "ledger.jsonl"),
        wake_intake=getattr(intake, "wake", lambda: None),
        wake_tracker=runtime.tracker.wake,
        gate=runtime.gate,
    )
    server = ApiServer(ctx)
    await server.start()
    return server
