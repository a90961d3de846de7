"""The aiohttp application: routes plus the middleware pipeline."""

from __future__ import annotations

from aiohttp import web

from batchd.emulator import routes_admin, routes_files, routes_jobs
from batchd.emulator.middleware import MIDDLEWARES
from batchd.emulator.state import STATE, EmulatorState

# JSON bodies (inline requests, up to 10,000) are read whole; uploads are streamed instead.
MAX_JSON_BODY_BYTES = 256 * 1024 * 1024


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_JSON_BODY_BYTES)
    app[STATE] = state
    app.add_routes(routes_files.routes)
    app.add_routes(routes_jobs.routes)
    app.add_routes(routes_admin.routes)
    return app
