"""``batchd check``: is this installation ready to run? Fast, and read-only.

In order: the configuration (including webhook secrets and event patterns), whether a daemon
holds the data folder, the database (reachable, its schema version, and for a database server
that several hosts share its clock against this host's: leases depend on it), every route's
spool folders (writable by the user running the check, or creatable), every provider (one
short attempt each: no read retries, at most ``PROBE_TIMEOUT_S``) and every queue source's
broker (one connection). Prints one line per check (``--json``: one document); the exit code
is 0 when everything passed, 3 for a configuration, database or spool problem, 1 when a
provider or a broker could not be reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from batchd.errors import ConfigError, ProviderError, SchemaMismatch, StoreError

if TYPE_CHECKING:
    from batchd.config import RouteConfig, Settings

PROBE_TIMEOUT_S: Final = 10.0
PROBE_CONNECT_S: Final = 5.0
EXIT_OK, EXIT_UNREACHABLE, EXIT_CONFIG = 0, 1, 3


@dataclass(frozen=True, slots=True)
class Result:
    check: str  # configuration, daemon, database, spool <route>, provider <name>
    ok: bool
    detail: str
    exit_code: int = EXIT_OK  # what a failure means for the exit code

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


def exit_code(results: list[Result]) -> int:
    return max((r.exit_code for r in results if not r.ok), default=EXIT_OK)


async def run_checks(config_path: Path | None) -> list[Result]:
    from batchd.config_load import load_settings

    try:
        settings = load_settings(config_path)
        settings.webhook_endpoints()
    except ConfigError as exc:
        return [Result("configuration", False, str(exc), EXIT_CONFIG)]
    results = [Result("configuration", True, str(settings.source or "(built-in defaults)"))]
    results.append(check_data_dir(settings.daemon.data_dir))
    results.append(check_daemon(settings.daemon.data_dir))
    results.append(await check_database(settings.store.url))
    results += [check_spool(r, f"routes[{i}].spool") for i, r in enumerate(settings.routes)]
    results += await check_providers(settings)
    results += [await check_source(settings, i) for i in range(len(settings.sources))]
    return results


def check_data_dir(data_dir: Path) -> Result:
    """A writable folder (its database and lock files too), or one that can be created."""
    from batchd.folders import data_dir_problems

    problems = data_dir_problems(data_dir)
    if problems:
        return Result("data folder", False, "; ".join(problems), EXIT_CONFIG)
    return Result("data folder", True, str(data_dir))


def check_daemon(data_dir: Path) -> Result:
    from batchd.wiring import daemon_running

    running = daemon_running(data_dir)
    text = {True: "running on", False: "not running on", None: "unknown (lock unreadable) for"}
    return Result("daemon", True, f"{text[running]} {data_dir}")


async def check_database(url: str) -> Result:
    from batchd.store.registry import describe, store_exists

    database = describe(url)
    if not await asyncio.to_thread(store_exists, url):
        # Before the first `batchd run`: nothing to check, and nothing to create here (a check
        # run as another user must not leave a database that the daemon cannot write).
        return Result("database", True, f"{database} (not created yet: batchd run creates it)")
    try:
        facts = await _integrity(url)
    except SchemaMismatch as exc:
        if exc.found > exc.expected:
            return Result("database", False, str(exc), EXIT_CONFIG)
        return Result("database", True, f"{database} (schema {exc.found}: batchd run migrates it)")
    except StoreError as exc:
        return Result("database", False, str(exc), EXIT_CONFIG)
    if facts.skew_s is not None and abs(facts.skew_s) > MAX_CLOCK_SKEW_S:
        return Result(
            "database",
            False,
            f"{database}: this host's clock is {-facts.skew_s:+.1f} s off the database's "
            f"(more than {MAX_CLOCK_SKEW_S:.0f} s): leases are compared across hosts, so a "
            "skewed host takes work over too early or too late; synchronise the clocks (NTP)",
            EXIT_CONFIG,
        )
    return Result("database", True, f"{database}{facts.describe()}")


MAX_CLOCK_SKEW_S: Final = 5.0


@runtime_checkable
class _SharedDatabase(Protocol):
    """A store served by a database server that several hosts share (PostgreSQL): its
    schema version and its clock can be asked for."""

    async def schema_version(self) -> int: ...

    async def server_time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class _Facts:
    schema: int | None = None
    skew_s: float | None = None  # the database's clock minus this host's

    def describe(self) -> str:
        if self.schema is None:
            return ""
        skew = "" if self.skew_s is None else f", clock skew {self.skew_s:+.3f} s"
        return f" (schema {self.schema}{skew})"


async def _integrity(url: str) -> _Facts:
    from batchd.store.registry import StoreOptions, make_store

    store = make_store(url, StoreOptions(migrate=False))
    await store.open()
    try:
        problems = await store.integrity_check()
        facts = _Facts()
        if isinstance(store, _SharedDatabase):
            before = time.time()
            server = await store.server_time()
            host = (before + time.time()) / 2  # the round trip's middle
            facts = _Facts(await store.schema_version(), server - host)
    finally:
        await store.close()
    if problems:
        raise StoreError("; ".join(problems[:3]))
    return facts


def check_spool(route: RouteConfig, key: str) -> Result:
    """The same rules as ``batchd run`` (batchd.folders): each of the four folders is a writable
    folder (not a symbolic link), or can be created by this user."""
    from batchd.folders import SPOOL_FOLDERS, spool_problems

    name = f"spool {route.name}"
    if route.spool is None:
        return Result(name, True, "none (a route fed by another source, not a drop folder)")
    problems = spool_problems(route.spool, key)
    if problems:
        return Result(name, False, "; ".join(problems), EXIT_CONFIG)
    missing = [f for f in SPOOL_FOLDERS if not os.path.lexists(route.spool / f)]
    later = f" ({', '.join(missing)} not created yet: batchd run creates them)" if missing else ""
    return Result(name, True, f"{route.spool}{later}")


async def check_source(settings: Settings, index: int) -> Result:
    """Connect to a queue source's broker and disconnect (nothing declared or consumed): one
    try, at most ``PROBE_TIMEOUT_S``. Never shows the broker password."""
    from batchd.queues.broker import BrokerDown
    from batchd.queues.factory import make_broker

    cfg = settings.sources[index]
    name = f"source {cfg.name}"
    try:
        url = settings.source_url(index)
    except ConfigError as exc:
        return Result(name, False, str(exc), EXIT_CONFIG)
    broker = make_broker(cfg, url, consumer="batchd-check")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await broker.probe()
    except BrokerDown as exc:
        return Result(name, False, f"{cfg.describe()}: {exc}", EXIT_UNREACHABLE)
    except TimeoutError:
        detail = f"{cfg.describe()}: no answer within {PROBE_TIMEOUT_S:g} s"
        return Result(name, False, detail, EXIT_UNREACHABLE)
    return Result(name, True, cfg.describe())


async def check_providers(settings: Settings) -> list[Result]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        names = sorted({r.provider for r in settings.routes})
        return [await check_provider(settings, name, session) for name in names]


async def check_provider(settings: Settings, name: str, session: Any) -> Result:
    from batchd.providers.registry import open_provider

    try:
        configured = settings.provider_settings(name)
    except ConfigError as exc:
        return Result(f"provider {name}", False, str(exc), EXIT_CONFIG)
    probe = dataclasses.replace(
        configured,
        read_retries=0,
        timeout_s=min(configured.timeout_s, PROBE_TIMEOUT_S),
        connect_timeout_s=min(configured.connect_timeout_s, PROBE_CONNECT_S),
    )
    where = "in-process emulator" if probe.kind == "emulator" else probe.base_url
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S), open_provider(probe, session) as provider:
            jobs = await provider.probe()
    except ConfigError as exc:
        return Result(f"provider {name}", False, str(exc), EXIT_CONFIG)
    except ProviderError as exc:
        return Result(f"provider {name}", False, f"{where}: {exc}", EXIT_UNREACHABLE)
    except TimeoutError:
        detail = f"{where}: no answer within {PROBE_TIMEOUT_S:g} s"
        return Result(f"provider {name}", False, detail, EXIT_UNREACHABLE)
    return Result(f"provider {name}", True, f"{where}: {jobs} jobs" if jobs is not None else where)
