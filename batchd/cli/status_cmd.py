"""``batchd status``: is everything done and delivered? For scripts and for people.

It reads the daemon's database (WAL: it runs next to the daemon) and probes the data folder's
lock. *Idle* means no open submission, no pending download and no undelivered event (events
not yet fanned out, deliveries still to be tried; dead letters do not count).

Exit codes: 0 idle, 4 busy (work is open), 1 error, 3 configuration; with ``--wait``, 0 once
idle, 4 when ``--timeout`` passes first.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict
from typing import Any

from batchd.cli import EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, print_json

EXIT_BUSY = 4


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status",
        help="open submissions, pending downloads, undelivered events; exit 0 when idle",
        description="Exit code 0: idle (no open submission, no pending download, no "
        "undelivered event); 4: busy; 1: error; 3: configuration.",
    )
    add_config_argument(status)
    add_json(status)
    status.add_argument("--wait", action="store_true", help="wait until idle (poll every 1 s)")
    status.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="with --wait: give up after S seconds (exit 4)",
    )
    status.set_defaults(handler=cmd_status)


def figures(stats: Any, running: bool | None) -> dict[str, Any]:
    """The status document: the store's counters, the daemon probe and the verdict."""
    view = asdict(stats)
    view["daemon_running"] = running
    view["idle"] = not (
        stats.open_submissions or stats.pending_downloads or stats.undelivered_events
    )
    return view


async def read_status(config: Any) -> dict[str, Any]:
    from batchd.config_load import load_settings
    from batchd.store.base import StoreStats
    from batchd.store.registry import StoreOptions, make_store, store_exists
    from batchd.wiring import daemon_running

    settings = load_settings(config)
    running = daemon_running(settings.daemon.data_dir)
    if not store_exists(settings.store.url):
        return figures(StoreStats(), running)
    store = make_store(settings.store.url, StoreOptions(migrate=False))
    await store.open()
    try:
        return figures(await store.stats(), running)
    finally:
        await store.close()


async def wait_idle(config: Any, timeout_s: float | None) -> dict[str, Any]:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        view = await read_status(config)
        if view["idle"] or (deadline is not None and time.monotonic() >= deadline):
            return view
        await asyncio.sleep(1.0)


def cmd_status(args: argparse.Namespace) -> int:
    timeout = args.timeout if args.wait else 0.0
    view = asyncio.run(wait_idle(args.config, timeout))
    if args.json:
        print_json(view)
    else:
        daemon = {True: "running", False: "not running", None: "unknown"}[view["daemon_running"]]
        print(
            f"{'idle' if view['idle'] else 'busy'}: open submissions {view['open_submissions']}, "
            f"open jobs {view['open_jobs']}, pending downloads {view['pending_downloads']}, "
            f"undelivered events {view['undelivered_events']}; daemon {daemon}"
        )
    return EXIT_OK if view["idle"] else EXIT_BUSY
