"""``batchd gc``: what the ``[retention]`` settings remove, shown first and removed on request.

A dry run by default: it lists the done/ folders and counts the events, deliveries and finished
rows that would go. ``--apply`` removes them now (the daemon also does it every
``[retention] interval_s``) and gives the freed space back to the file system; ``--vacuum``
rewrites the whole database file (needed once for a database created before schema version 2,
which then gives space back incrementally; it locks the database while it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from batchd.cli import EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, print_json
from batchd.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gc = subparsers.add_parser(
        "gc",
        help="show (or, with --apply, remove) what [retention] lets go: done/ folders, "
        "old events and finished rows",
        description="A dry run unless --apply. What goes is set in [retention] "
        "(done_days, events_days, rows_days; 0 keeps for ever).",
    )
    add_config_argument(gc)
    add_json(gc)
    gc.add_argument("--apply", action="store_true", help="remove it now (default: only show it)")
    gc.add_argument(
        "--vacuum",
        action="store_true",
        help="with --apply: rewrite the whole database file (locks it while it runs)",
    )
    gc.set_defaults(handler=cmd_gc)


async def _run(config: Path | None, *, apply: bool, vacuum: bool) -> dict[str, Any]:
    from batchd.config_load import load_settings
    from batchd.retention import RetentionPolicy, collect_garbage
    from batchd.store.registry import StoreOptions, make_store

    settings = load_settings(config)
    policy = RetentionPolicy(**settings.retention.model_dump())
    store = make_store(settings.store.url, StoreOptions(migrate=False))
    await store.open()
    try:
        report = await collect_garbage(
            store, policy, now=time.time(), apply=apply, full=apply and vacuum
        )
    finally:
        await store.close()
    return report.as_dict()


def cmd_gc(args: argparse.Namespace) -> int:
    if args.vacuum and not args.apply:
        raise UsageError("--vacuum rewrites the database: it needs --apply")
    found = asyncio.run(_run(args.config, apply=args.apply, vacuum=args.vacuum))
    if args.json:
        print_json(found)
        return EXIT_OK
    verb = "removed" if found["applied"] else "would remove"
    for folder in found["done_folders"]:
        print(f"{verb} {folder}/")
    print(
        f"{verb} {found['submissions']} finished submissions ({found['jobs']} jobs), "
        f"{found['events']} events ({found['deliveries']} webhook deliveries)"
    )
    if found["applied"]:
        print(f"database: {found['freed_bytes']} bytes given back")
    else:
        print("dry run: nothing was removed (--apply removes it)")
    return EXIT_OK
