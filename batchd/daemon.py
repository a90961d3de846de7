"""The composition root: build everything from the settings, run the loops, stop cleanly.

Start-up (each step before ``READY=1``): take the data folder's lock, open and migrate the
store, open the providers (credentials read), finish half-done claims and scan every inbox once.
Run: one named task per loop (intake, submitter, tracker, collector, notifier, housekeeper) plus
the watchdog and the status reporter. A failed pass is logged; a loop that dies stops the
process with exit code 1. SIGTERM/SIGINT: ``STOPPING=1``, stop taking files, let in-flight
passes finish within ``shutdown_grace_s``, exit 0; a second signal exits at once. SIGHUP: reload
the configuration without dropping in-flight work (a bad configuration is refused and the old
one stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from batchd.api.server import ApiServer, start_api
from batchd.clock import Clock, SystemClock
from batchd.config import Settings
from batchd.config_load import load_settings
from batchd.errors import ConfigError
from batchd.folders import folder_problems
from batchd.log import configure_logging
from batchd.loops import DEFAULT_MAX_PASS_S, DEFAULT_STALL_S, run_loop
from batchd.providers.base import BatchProvider
from batchd.providers.registry import open_provider
from batchd.queues.inflight import broker_problem
from batchd.store.registry import StoreOptions, make_store
from batchd.systemd import (
    SystemdNotifier,
    format_status,
    watchdog_interval_s,
    watchdog_loop,
)
from batchd.wiring import (
    Runtime,
    apply_settings,
    build_runtime,
    data_dir_lock,
    host_id,
    provider_names,
    providers_in_use,
)

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_LOOP_DIED = 1
STATUS_INTERVAL_S = 5.0
# The stop (SIGTERM): passes in flight get shutdown_grace_s, then are cancelled (CANCEL_WAIT_S
# to unwind); webhook attempts in flight get what is left of NOTIFIER_LAST_S on top, at most
# NOTIFIER_GRACE_S. With the default grace of 5 s the daemon is gone in about 7.5 s, within the
# 10 s systemd and the issue allow.
EXTEND_START_S = 30.0
MAX_START_EXTENSION_S = 3600.0
CANCEL_WAIT_S = 1.0
NOTIFIER_LAST_S = 1.5
NOTIFIER_GRACE_S = 5.0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        systemd: SystemdNotifier | None = None,
        install_signals: bool = True,
    ) -> None:
        self.settings = settings
        self._config_path = config_path
        self._clock = clock or SystemClock()
        self._sd = systemd or SystemdNotifier()
        self._install_signals = install_signals
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit = contextlib.AsyncExitStack()
        self.runtime: Runtime | None = None
        self.api: ApiServer | None = None
        self.ready = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._reload_pending = False  # a SIGHUP came before the daemon was ready
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_began: float | None = None  # loop time when the stop began

    # ------------------------------------------------------------------ public
    async def run(self) -> int:
        problems = folder_problems(self.settings)  # one line each, not a traceback
        if problems:
            raise ConfigError("\n".join(problems))
        with data_dir_lock(self.settings.daemon.data_dir), self._signal_handlers():
            async with self._exit:
                runtime = await self._start()
                return await self._serve(runtime)

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ start-up
    async def _start(self) -> Runtime:
        settings = self.settings
        data_dir = settings.daemon.data_dir
        store = make_store(settings.store.url, StoreOptions(on_migration=self._migrating))
        async with self._start_keeps_extending():
            await store.open()
        self._exit.push_async_callback(store.close)
        session = aiohttp.ClientSession()
        self._exit.push_async_callback(session.close)
        self._session = session
        providers = await self._open_providers(
            provider_names(settings, await providers_in_use(store))
        )
        host = host_id(data_dir)
        deployment = await store.deployment_id(host, now=self._clock.now())
        runtime = build_runtime(
            settings, store, providers, instance=deployment, host=host, clock=self._clock
        )
        # LIFO: in-flight webhook attempts finish recording before the store closes.
        self._exit.push_async_callback(self._close_notifier, runtime)
        for source in runtime.sources:
            source.start()
            self._exit.callback(source.close)
            drain = getattr(source, "drain", None)  # a queue source flushes what waits
            if drain is not None:
                self._exit.push_async_callback(self._drain_source, drain)
            async with self._start_keeps_extending():  # many files may wait after a downtime
                await source.run_once()  # finish half-done claims, first scan
            runtime.heartbeats.beat(source.name)
        self.runtime = runtime
        self.api = await start_api(settings, runtime, self._clock)
        if self.api is not None:  # stopped before the store closes (LIFO)
            self._exit.push_async_callback(self.api.stop)
        log.info(
            "daemon.started",
            routes=[r.name for r in settings.routes],
            providers=sorted(providers),
            data_dir=str(data_dir),
        )
        return runtime

    async def _drain_source(self, drain: Callable[[], Awaitable[object]]) -> None:
        """After the loops stopped, before the store closes: within the shutdown grace."""
        try:
            async with asyncio.timeout(self.settings.daemon.shutdown_grace_s):
                await drain()
        except Exception:  # the messages stay with the broker: redelivered at the next start
            log.exception("daemon.source_drain_failed")

    def _migrating(self, version: int) -> None:
        log.info("daemon.migrating", version=version)

    @contextlib.asynccontextmanager
    async def _start_keeps_extending(self) -> AsyncIterator[None]:
        """While a start-up step runs, keep systemd's start timeout at least EXTEND_START_S
        ahead (a long migration, thousands of files waiting to be validated), for at most
        MAX_START_EXTENSION_S in all."""

        async def extend() -> None:
            loop = asyncio.get_running_loop()
            until = loop.time() + MAX_START_EXTENSION_S
            while loop.time() < until:
                self._sd.extend_timeout(EXTEND_START_S)
                await asyncio.sleep(EXTEND_START_S / 3)

        task = asyncio.create_task(extend(), name="extend-start")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _open_providers(self, names: list[str]) -> dict[str, BatchProvider]:
        providers: dict[str, BatchProvider] = {}
        for name in names:
            ps = self.settings.provider_settings(name)
            providers[name] = await self._exit.enter_async_context(open_provider(ps, self._session))
        return providers

    # ------------------------------------------------------------------ running
    async def _serve(self, rt: Runtime) -> int:
        for loop in rt.loops:
            rt.tasks[loop.name] = asyncio.create_task(
                run_loop(
                    loop,
                    self._stop,
                    self._beat(rt, loop.name),
                    max_pass_s=self._max_pass_s(rt, loop.name),
                    stall_s=self._stall_s(rt, loop.name),
                ),
                name=f"loop:{loop.name}",
            )
        helpers = [asyncio.create_task(self._report_status(rt), name="status")]
        interval = watchdog_interval_s()
        if interval is not None:
            helpers.append(
                asyncio.create_task(
                    watchdog_loop(
                        self._sd,
                        rt.heartbeats,
                        interval_s=interval,
                        max_age_s=self.settings.daemon.heartbeat_stale_s,
                        stop=self._stop,
                    ),
                    name="watchdog",
                )
            )
        self._sd.ready(status="started")
        self.ready.set()
        if self._reload_pending:  # asked for while starting: the file may have changed since
            self._on_reload_signal()
        exit_code = await self._until_stopped(rt)
        self._stop_began = asyncio.get_running_loop().time()
        self._sd.stopping(status="stopping")
        await self._drain(rt, helpers)
        log.info("daemon.stopped", exit_code=exit_code)
        return exit_code

    def _max_pass_s(self, rt: Runtime, name: str) -> float:
        """How long one pass may legitimately take before the watchdog should fire."""
        downloads = self._longest_download_s(rt)
        return {"collector": downloads + 600.0, "submitter": 3600.0}.get(name, DEFAULT_MAX_PASS_S)

    def _stall_s(self, rt: Runtime, name: str) -> float:
        """How long a pass may go without progress (one job, page or file done): the longest
        single step, a download for the collector, a few timed-out requests otherwise."""
        if name == "collector":
            return self._longest_download_s(rt) + 60.0
        requests = (self.settings.provider_settings(n).timeout_s for n in rt.providers)
        return max(DEFAULT_STALL_S, 4 * max(requests, default=60.0) + 60.0)

    def _longest_download_s(self, rt: Runtime) -> float:
        timeouts = (self.settings.provider_settings(n).download_timeout_s for n in rt.providers)
        return max(timeouts, default=3600.0)

    def _beat(self, rt: Runtime, name: str) -> Callable[[str], None]:
        def beat(loop_name: str) -> None:
            rt.heartbeats.beat(loop_name)
            if name != "notifier":
                rt.notifier.wake()

        return beat

    async def _until_stopped(self, rt: Runtime) -> int:
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait(
            {stopper, *rt.tasks.values()}, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        # A loop that returned because the stop was requested finished in the same turn as
        # ``stopper`` (both wait on the event): that is a clean stop, not a dead loop.
        stopping = self._stop.is_set()
        dead = [t for t in done if t is not stopper and not (stopping and _returned(t))]
        for task in dead:
            error = task.exception() if not task.cancelled() else None
            log.error("daemon.loop_died", loop=task.get_name(), error=repr(error))
        self._stop.set()
        return EXIT_LOOP_DIED if dead else EXIT_OK

    async def _drain(self, rt: Runtime, helpers: list[asyncio.Task[None]]) -> None:
        """Let in-flight passes finish within the grace period, then cancel what is left."""
        tasks = [*rt.tasks.values(), *helpers]
        _, pending = await asyncio.wait(tasks, timeout=self.settings.daemon.shutdown_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("daemon.drain_timeout", cancelled=[t.get_name() for t in pending])
            await asyncio.wait(pending, timeout=CANCEL_WAIT_S)

    async def _close_notifier(self, rt: Runtime) -> None:
        """Webhook attempts in flight have run alongside the drain; what is left of the stop's
        budget (grace + CANCEL_WAIT_S + NOTIFIER_LAST_S) is theirs, at most NOTIFIER_GRACE_S."""
        grace = NOTIFIER_GRACE_S
        if self._stop_began is not None:
            budget = self.settings.daemon.shutdown_grace_s + CANCEL_WAIT_S + NOTIFIER_LAST_S
            left = self._stop_began + budget - asyncio.get_running_loop().time()
            grace = min(NOTIFIER_GRACE_S, max(0.5, left))
        await rt.notifier.close(grace_s=grace)

    async def _report_status(self, rt: Runtime) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                stats = await rt.store.stats()
                broker = broker_problem(rt.sources)
                self._sd.status(
                    format_status(stats, last_error=rt.gate.last_error, broker_down=broker)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=STATUS_INTERVAL_S)

    # ------------------------------------------------------------------ signals and reload
    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if not self._install_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _on_stop_signal(self, name: str) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("daemon.forced_exit", signal=name)
            os._exit(EXIT_LOOP_DIED)
        log.info("daemon.stopping", signal=name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        if not self.ready.is_set():
            log.info("daemon.reload_deferred", reason="still starting")
            self._reload_pending = True
            return
        self._reload_pending = False
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Re-read the configuration; apply it without dropping in-flight work. Reloads run
        one at a time, and systemd always hears READY=1 after RELOADING=1."""
        async with self._reload_lock:
            rt = self.runtime
            if rt is None:
                return False
            self._sd.reloading()
            try:
                return await self._reload(rt)
            except Exception as exc:  # refused, whatever the cause: the old settings stay
                log.exception("daemon.reload_failed", error=str(exc))
                self._sd.ready(status=f"reload refused: {exc}"[:200])
                return False

    async def _reload(self, rt: Runtime) -> bool:
        new = await asyncio.to_thread(load_settings, self._config_path)
        self._check_reloadable(new)
        async with contextlib.AsyncExitStack() as opened:
            new_providers = await self._reload_providers(new, rt, opened)
            configure_logging(
                level=new.daemon.log_level,
                fmt=new.daemon.log_format,
                debug_loggers=new.daemon.debug_loggers,
            )
            apply_settings(rt, new, new_providers)
            if self.api is not None:
                self.api.ctx.settings = new
            self.settings = new
            # Applied: providers opened for it now live as long as the daemon.
            self._exit.push_async_callback(opened.pop_all().aclose)
        self._sd.ready(status="reloaded")
        log.info("daemon.reloaded", routes=[r.name for r in new.routes])
        return True

    def _check_reloadable(self, new: Settings) -> None:
        if new.daemon.data_dir != self.settings.daemon.data_dir:
            raise ConfigError("daemon.data_dir cannot change on reload; restart batchd instead")
        if new.store.url != self.settings.store.url:
            raise ConfigError("store.url cannot change on reload; restart batchd instead")
        if new.api.listen != self.settings.api.listen:
            raise ConfigError("api.listen cannot change on reload; restart batchd instead")
        problems = folder_problems(new)  # a new spool batchd cannot write refuses the reload
        if problems:
            raise ConfigError("; ".join(problems))
        new.webhook_endpoints()  # resolve secrets now, so a bad one refuses the reload

    async def _reload_providers(
        self, new: Settings, rt: Runtime, opened: contextlib.AsyncExitStack
    ) -> dict[str, BatchProvider]:
        wanted = provider_names(new, await providers_in_use(rt.store))
        providers: dict[str, BatchProvider] = {}
        for name in wanted:
            settings = new.provider_settings(name)
            if name in rt.providers and self.settings.provider_settings(name) == settings:
                providers[name] = rt.providers[name]
            else:
                providers[name] = await opened.enter_async_context(
                    open_provider(settings, self._session)
                )
        return providers


def _returned(task: asyncio.Task[Any]) -> bool:
    """The task ended by returning (not cancelled, no exception)."""
    return not task.cancelled() and task.exception() is None
