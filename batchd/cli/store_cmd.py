"""``batchd store copy``: move an installation's state from SQLite to PostgreSQL.

``--from sqlite:///var/lib/batchd/batchd.sqlite3 --to postgresql://batchd@db/batchd``: the
daemon using the SQLite file must be stopped (its data folder's lock is checked), the target
schema is created when missing and must be empty, and the copy lands whole, verified (every
table's row count and ids compared) or not at all (``store/postgres_copy.py``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from batchd.cli import EXIT_OK
from batchd.cli._output import add_json, print_json
from batchd.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = subparsers.add_parser("store", help="move the job store (store copy)")
    verbs = store.add_subparsers(dest="store_command", metavar="VERB", required=True)
    copy = verbs.add_parser(
        "copy",
        help="copy a stopped SQLite store into an empty PostgreSQL database, verified",
        description="Copy every submission, job, event, delivery and endpoint of a stopped "
        "SQLite store into an empty PostgreSQL database (created schema), then verify the "
        "row counts and ids of every table before committing. Nothing is merged: a target "
        "holding any row is refused.",
    )
    copy.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="sqlite:///<path> (stopped)"
    )
    copy.add_argument(
        "--to", dest="target", required=True, metavar="URL", help="postgresql://user@host/db"
    )
    add_json(copy)
    copy.set_defaults(handler=cmd_copy)


def _checked(source: str, target: str) -> None:
    from batchd.store.registry import scheme_of, url_problem

    for flag, url, schemes in (
        ("--from", source, {"sqlite"}),
        ("--to", target, {"postgresql", "postgres"}),
    ):
        if scheme_of(url) not in schemes:
            wanted = " or ".join(f"{s}://" for s in sorted(schemes))
            raise UsageError(f"{flag} must be a {wanted} URL")
        problem = url_problem(url)
        if problem is not None:
            raise UsageError(f"{flag}: {problem}")


async def _copy(source: str, target: str) -> dict[str, Any]:
    from batchd.errors import StoreError
    from batchd.store.postgres_copy import copy_sqlite_to_postgres, source_path
    from batchd.store.registry import describe
    from batchd.wiring import daemon_running

    path = source_path(source)
    if daemon_running(path.parent):
        raise StoreError(f"a daemon is running on {path.parent}: stop it before copying its store")
    report = await copy_sqlite_to_postgres(path, target)
    return {"from": str(path), "to": describe(target), **report.as_dict()}


def cmd_copy(args: argparse.Namespace) -> int:
    _checked(args.source, args.target)
    found = asyncio.run(_copy(args.source, args.target))
    if args.json:
        print_json(found)
        return EXIT_OK
    counts = ", ".join(f"{n} {table}" for table, n in found["copied"].items())
    print(f"copied {found['from']} to {found['to']}: {counts} (verified)")
    return EXIT_OK
