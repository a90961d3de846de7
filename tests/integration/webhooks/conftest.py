"""Webhook receivers: real aiohttp servers on 127.0.0.1 that record every request, a notifier
over the memory store, and the independent ``standardwebhooks`` package as the judge."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from batchd.clock import Clock
from batchd.notifier import Notifier, SessionFactory
from batchd.secret import Secret
from batchd.store.base import JobStore
from batchd.store.memory import MemoryJobStore
from batchd.store.sqlite import SqliteJobStore
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.signing import new_secret

WAIT_S = 30.0  # a guard against hanging forever, never a performance threshold


@dataclass
class Seen:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])


Respond = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


async def ok(_request: web.Request, _index: int) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Receiver:
    respond: Respond
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    finished: int = 0  # requests whose handler returned
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = len(self.seen)
        self.seen.append(Seen(request.path, dict(request.headers), await request.read()))
        self._changed.set()
        try:
            return await self.respond(request, index)
        finally:
            self.finished += 1
            self._changed.set()

    async def wait_until(self, condition: Callable[[Receiver], bool]) -> None:
        async def waiting() -> None:
            while not condition(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiting(), timeout=WAIT_S)

    def ids(self) -> list[str]:
        return [s.id for s in self.seen]


class ReceiverFactory(Protocol):
    async def __call__(self, respond: Respond = ..., host: str = ...) -> Receiver: ...


@pytest.fixture
async def make_receiver() -> AsyncIterator[ReceiverFactory]:
    runners: list[web.AppRunner] = []

    async def make(respond: Respond = ok, host: str = "127.0.0.1") -> Receiver:
        receiver = Receiver(respond)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        receiver.url = f"http://{shown}:{port}/hook"
        return receiver

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """The same behaviour against both store implementations."""
    if request.param == "memory":
        yield MemoryJobStore()
        return
    sqlite = SqliteJobStore(tmp_path / "batchd.sqlite3")
    await sqlite.open()
    try:
        yield sqlite
    finally:
        await sqlite.close()


def endpoint(name: str, url: str, secret: str | None = None, **options: Any) -> WebhookEndpoint:
    """A loopback endpoint (http and private addresses allowed unless overridden)."""
    options.setdefault("allow_http", True)
    options.setdefault("allow_private", True)
    return WebhookEndpoint(name, url, (Secret(secret or new_secret()),), **options)


def oracle_signed(secret: str, seen: Seen) -> bool:
    """``standardwebhooks``' own signer agrees with one of the request's signatures (for
    requests stamped by a manual clock, which ``verify`` would reject as too old or too new)."""
    stamp = datetime.fromtimestamp(seen.timestamp, UTC)
    expected = Webhook(secret).sign(seen.id, stamp, seen.body.decode())
    return expected in seen.headers["webhook-signature"].split(" ")


class MappingResolver(AbstractResolver):
    """Resolves the names it was given to fixed addresses (a hosts file for one test)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"unknown host {host}")
        address = self.names[host]
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0, flags=0)]

    async def close(self) -> None:
        pass


def notifier_for(
    store: JobStore,
    endpoints: list[WebhookEndpoint],
    clock: Clock,
    *,
    seed: int = 1,
    session_factory: SessionFactory | None = None,
) -> Notifier:
    return Notifier(
        store, endpoints, clock=clock, rng=random.Random(seed), session_factory=session_factory
    )


async def pump(notifier: Notifier) -> int:
    """Passes (each awaiting its attempts) until a pass finds nothing to do."""
    total = 0
    while (done := await notifier.run_once()) > 0:
        await notifier.drain()
        total += done
    return total
