"""``batchd check``: validate the configuration, open the database, reach every provider.

Prints one line per check; the exit code is 0 when everything passed, 3 for a configuration or
database problem, 1 when a provider could not be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp

from batchd.errors import ConfigError, ProviderError, SchemaMismatch, StoreError


def _say(ok: bool, what: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", file=sys.stdout if ok else sys.stderr)


async def run_checks(config_path: Path | None) -> int:
    from batchd.config import load_settings

    try:
        settings = load_settings(config_path)
        settings.webhook_endpoints()
    except ConfigError as exc:
        _say(False, f"configuration: {exc}")
        return 3
    _say(True, f"configuration {settings.source or '(built-in defaults)'}")
    database = settings.daemon.database_path
    if not database.exists():
        # Before the first `batchd run`: nothing to check, and nothing to create here (a check
        # run as another user must not leave a database that the daemon cannot write).
        _say(True, f"database {database} (not created yet: batchd run creates it)")
        return await _check_providers(settings)
    try:
        await _check_store(database)
    except SchemaMismatch as exc:
        if exc.found > exc.expected:
            _say(False, f"database: {exc}")
            return 3
        _say(True, f"database {database} (schema {exc.found}: batchd run migrates it)")
        return await _check_providers(settings)
    except StoreError as exc:
        _say(False, f"database: {exc}")
        return 3
    _say(True, f"database {database}")
    return await _check_providers(settings)


async def _check_store(path: Path) -> None:
    from batchd.store.sqlite import SqliteJobStore

    store = SqliteJobStore(path, migrate=False)
    await store.open()
    try:
        problems = await store.integrity_check()
    finally:
        await store.close()
    if problems:
        raise StoreError("; ".join(problems[:3]))


async def _check_providers(settings: object) -> int:
    from batchd.config import Settings
    from batchd.providers.base import JobFilter
    from batchd.providers.registry import open_provider

    assert isinstance(settings, Settings)
    failed = 0
    async with aiohttp.ClientSession() as session:
        for name in sorted({r.provider for r in settings.routes}):
            try:
                provider_settings = settings.provider_settings(name)
                async with open_provider(provider_settings, session) as provider:
                    page = await provider.list_jobs(JobFilter(page_size=1))
            except ConfigError as exc:
                _say(False, f"provider {name}: {exc}")
                return 3
            except ProviderError as exc:
                _say(False, f"provider {name}: {exc}")
                failed += 1
                continue
            where = (
                "in-process emulator"
                if provider_settings.kind == "emulator"
                else provider_settings.base_url
            )
            _say(True, f"provider {name} ({where}): {page.total} jobs")
    return 1 if failed else 0
