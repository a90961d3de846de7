"""``batchd jobs list|show|watch`` and ``batchd cancel``: read and steer the daemon's store.

These commands open the SQLite database directly (WAL lets them read while the daemon runs);
``cancel`` only records the intent; the daemon notices it within half a second and sends it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from batchd.cli import EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, add_quiet, note, print_json
from batchd.cli._paging import PAGING_HELP, add_paging, limit_of
from batchd.errors import BatchdError

T = TypeVar("T")
REF_HELP = (
    "a submission id, a job id, a provider job id, or the file's name (the newest of that name)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = subparsers.add_parser("jobs", help="list, show and watch submissions and their jobs")
    sub = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND")

    listing = sub.add_parser(
        "list",
        help="submissions, newest first",
        description="Submissions, newest first: a table on a terminal, tab-separated rows "
        "(with a header line) otherwise. " + PAGING_HELP,
    )
    add_config_argument(listing)
    listing.add_argument(
        "--state",
        help="a submission state (claiming, claimed, active, done, rejected, abandoned), a "
        "job state (pending, running, succeeded, failed, ...): submissions with a job in it, "
        "or an outcome: completed_with_errors, partial",
    )
    add_paging(listing, "submissions")
    add_json(listing)
    add_quiet(listing, "submission ids")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="one submission or job: state, counters, timings, files")
    add_config_argument(show)
    show.add_argument("id", help=REF_HELP)
    add_json(show)
    show.set_defaults(handler=cmd_show)

    watch = sub.add_parser(
        "watch",
        help="live progress per submission: rate, ETA, failures",
        description="Live progress of each open submission (requests answered as the provider "
        "reports them, failed count, rate over the last minute, ETA); a finished submission "
        "stays on screen with its outcome for --keep seconds.",
        epilog="with --exit, the exit code is the highest of the outcomes' codes: "
        "0 succeeded, 4 completed_with_errors, 5 partial, 6 failed, 7 rejected, 8 cancelled",
    )
    add_config_argument(watch)
    watch.add_argument("--interval", type=float, default=1.0, help="refresh every N seconds")
    watch.add_argument("--once", action="store_true", help="draw once and exit")
    watch.add_argument(
        "--keep",
        type=float,
        default=60.0,
        metavar="S",
        help="show a finished submission with its outcome for S seconds (default 60)",
    )
    watch.add_argument(
        "--exit",
        action="store_true",
        help="end once every submission shown has finished; exit code by outcome (see below)",
    )
    watch.set_defaults(handler=cmd_watch)

    cancel = subparsers.add_parser(
        "cancel", help="cancel a submission (all its jobs); partial results are still collected"
    )
    add_config_argument(cancel)
    cancel.add_argument(
        "id",
        help="a submission id, a job id, a provider job id, or the file's name (the submission "
        "of that name still open)",
    )
    add_json(cancel)
    cancel.set_defaults(handler=cmd_cancel)


def _with_store(config: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    """``action(store)`` on the database, or on the daemon's API socket for a user who may not
    read the database (``[api] listen`` has a ``unix:`` address)."""
    from batchd.cli._api_store import api_store_for
    from batchd.cli._submit import unreadable
    from batchd.config_load import load_settings
    from batchd.store.registry import StoreOptions, make_store

    settings = load_settings(config)

    async def run() -> T:
        over_api = api_store_for(settings, await asyncio.to_thread(unreadable, settings))
        store = over_api or make_store(settings.store.url, StoreOptions(migrate=False))
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_list(args: argparse.Namespace) -> int:
    from batchd.cli._views import list_page, print_table, state_filter

    state_filter(args.state)  # a usage error before the database is opened
    page = _with_store(
        args.config, lambda store: list_page(store, args.state, limit_of(args), args.cursor)
    )
    if args.json:
        print_json(page.as_json("submissions"))
    else:
        print_table(page.rows, quiet=args.quiet)
    page.warn_if_cut("submissions")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from batchd.cli._views import describe, print_description

    found = _with_store(args.config, lambda store: describe(store, args.id))
    if found is None:
        raise BatchdError(f"no submission, job or file named {args.id}")
    if args.json:
        print_json(found)
    else:
        print_description(found)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from batchd.cli._watch import watch

    code: int = _with_store(
        args.config,
        lambda store: watch(
            store, args.interval, once=args.once, exit_when_done=args.exit, keep_s=args.keep
        ),
    )
    return code


def cmd_cancel(args: argparse.Namespace) -> int:
    from batchd.cli._views import request_cancel

    sub = _with_store(args.config, lambda store: request_cancel(store, args.id))
    if args.json:
        shown = {"id": sub.id, "name": sub.name, "results_dir": sub.results_dir}
        print_json({**shown, "cancel_requested": True})
        return EXIT_OK
    print(f"cancel requested for submission {sub.id} ({sub.name}); the daemon sends it at once")
    note(f"partial results will be written to {sub.results_dir}")
    return EXIT_OK
