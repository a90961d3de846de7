"""``batchd jobs list|show|watch`` and ``batchd cancel``: read and steer the daemon's store.

These commands open the SQLite database directly (WAL lets them read while the daemon runs);
``cancel`` only records the intent; the daemon notices it within half a second and sends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from batchd.cli import EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.errors import BatchdError

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = subparsers.add_parser("jobs", help="list, show and watch submissions and their jobs")
    sub = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND")

    listing = sub.add_parser("list", help="submissions, newest first")
    add_config_argument(listing)
    listing.add_argument("--state", help="submission state (active, done, ...) or job state")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="one submission or job: state, counters, timings, files")
    add_config_argument(show)
    show.add_argument("id", help="submission id, job id or provider job id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)

    watch = sub.add_parser("watch", help="live progress bars per open submission")
    add_config_argument(watch)
    watch.add_argument("--interval", type=float, default=1.0, help="refresh every N seconds")
    watch.add_argument("--once", action="store_true", help="draw once and exit")
    watch.set_defaults(handler=cmd_watch)

    cancel = subparsers.add_parser(
        "cancel", help="cancel a submission (all its jobs); partial results are still collected"
    )
    add_config_argument(cancel)
    cancel.add_argument("id", help="submission id, job id or provider job id")
    cancel.set_defaults(handler=cmd_cancel)


def _with_store(config: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    from batchd.config import load_settings
    from batchd.store.sqlite import SqliteJobStore

    settings = load_settings(config)

    async def run() -> T:
        store = SqliteJobStore(settings.daemon.database_path, migrate=False)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_list(args: argparse.Namespace) -> int:
    from batchd.cli._views import list_rows, print_table

    rows = _with_store(args.config, lambda store: list_rows(store, args.state, args.limit))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from batchd.cli._views import describe, print_description

    found = _with_store(args.config, lambda store: describe(store, args.id))
    if found is None:
        raise BatchdError(f"no submission or job with id {args.id}")
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print_description(found)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from batchd.cli._watch import watch

    _with_store(args.config, lambda store: watch(store, args.interval, once=args.once))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from batchd.cli._views import request_cancel

    sub = _with_store(args.config, lambda store: request_cancel(store, args.id))
    print(f"cancel requested for submission {sub.id} ({sub.name}); the daemon sends it at once")
    print(f"partial results will be written to {sub.results_dir}", file=sys.stderr)
    return EXIT_OK
