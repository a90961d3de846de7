"""``batchd webhooks new-secret|list|test|enable`` and ``batchd events list|replay``.

``new-secret`` prints a fresh signing secret and nothing else. The other commands read the
configuration and open the daemon's SQLite database directly (WAL lets them run next to the
daemon); a replayed event is picked up by the daemon's notifier on its next pass, with the same
event id as before.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from batchd.cli import EXIT_FAILURE, EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, add_quiet, print_json, print_rows
from batchd.cli._paging import PAGING_HELP, add_paging, limit_of
from batchd.errors import BatchdError, UsageError

if TYPE_CHECKING:
    from batchd.config import Settings
    from batchd.models import Event
    from batchd.store.base import Delivery, EndpointHealth, JobStore
    from batchd.webhooks.endpoint import WebhookEndpoint

T = TypeVar("T")
Parsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: Parsers) -> None:
    hooks = subparsers.add_parser("webhooks", help="signed webhook endpoints")
    sub = hooks.add_subparsers(dest="webhooks_command", metavar="COMMAND")
    new = sub.add_parser("new-secret", help="print a fresh signing secret (whsec_...)")
    new.set_defaults(handler=cmd_new_secret)
    listing = sub.add_parser("list", help="configured endpoints and their health")
    add_config_argument(listing)
    add_json(listing)
    add_quiet(listing, "endpoint names")
    listing.set_defaults(handler=cmd_list_endpoints)
    test = sub.add_parser("test", help="send one signed webhook.test event and print the status")
    add_config_argument(test)
    test.add_argument("name", help="endpoint name")
    add_json(test)
    test.set_defaults(handler=cmd_test)
    enable = sub.add_parser("enable", help="re-enable an endpoint disabled by a 410 answer")
    add_config_argument(enable)
    enable.add_argument("name", help="endpoint name")
    add_json(enable)
    enable.set_defaults(handler=cmd_enable)
    _register_events(subparsers)


def _register_events(subparsers: Parsers) -> None:
    events = subparsers.add_parser("events", help="the event outbox")
    sub = events.add_subparsers(dest="events_command", metavar="COMMAND")
    listing = sub.add_parser(
        "list",
        help="events, newest first, with their deliveries",
        description="Events, newest first, with their deliveries. " + PAGING_HELP,
    )
    add_config_argument(listing)
    listing.add_argument("--undelivered", action="store_true", help="only undelivered events")
    listing.add_argument("--since", type=parse_time, help="ISO 8601 time (UTC if no offset)")
    add_paging(listing, "events")
    add_json(listing)
    add_quiet(listing, "event ids")
    listing.set_defaults(handler=cmd_list_events)
    replay = sub.add_parser("replay", help="deliver events again (same ids) to every endpoint")
    add_config_argument(replay)
    replay.add_argument("ids", nargs="*", metavar="ID", help="event ids")
    replay.add_argument(
        "--since", type=parse_time, help="every event since this time (ISO 8601, UTC if no offset)"
    )
    add_json(replay)
    replay.set_defaults(handler=cmd_replay)


# ------------------------------------------------------------------ pure helpers
def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (``2026-01-02T03:04:05Z``; UTC without an offset) or a
    number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def shown_url(url: str) -> str:
    """The URL without its query or fragment (which may carry a token)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def endpoint_rows(
    endpoints: Sequence[tuple[str, str]], health: Sequence[EndpointHealth]
) -> list[dict[str, Any]]:
    """Rows for ``(name, url)`` of every configured endpoint, plus endpoints the store knows."""
    by_name = {h.name: h for h in health}
    rows = [_endpoint_row(n, shown_url(url), by_name.get(n), True) for n, url in endpoints]
    configured = {n for n, _ in endpoints}
    rows += [_endpoint_row(h.name, None, h, False) for h in health if h.name not in configured]
    return rows


def _endpoint_row(
    name: str, url: str | None, h: EndpointHealth | None, configured: bool
) -> dict[str, Any]:
    disabled = h is not None and h.disabled_at is not None
    status = "not configured" if not configured else "disabled" if disabled else "enabled"
    return {
        "name": name,
        "url": url,
        "status": status,
        "disabled_at": iso(h.disabled_at) if h else None,
        "disabled_reason": h.disabled_reason if h else None,
        "last_success_at": iso(h.last_success_at) if h else None,
        "last_failure_at": iso(h.last_failure_at) if h else None,
        "consecutive_failures": h.consecutive_failures if h else 0,
        "pending": h.pending if h else 0,
        "dead": h.dead if h else 0,
    }


def event_row(event: Event, deliveries: Sequence[Delivery]) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "created_at": iso(event.created_at),
        "submission_id": event.submission_id,
        "job_id": event.job_id,
        "deliveries": [
            {
                "endpoint": d.endpoint,
                "state": d.state,
                "attempts": d.attempts,
                "last_status": d.last_status,
                "last_error": d.last_error,
                "next_attempt_at": iso(d.next_attempt_at) if d.state == "pending" else None,
                "delivered_at": iso(d.delivered_at),
            }
            for d in deliveries
        ],
    }


# ------------------------------------------------------------------ handlers
def cmd_new_secret(_args: argparse.Namespace) -> int:
    from batchd.webhooks.signing import new_secret

    print(new_secret())
    return EXIT_OK


def cmd_list_endpoints(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    # No secrets needed to list (they may exist only in the service's $CREDENTIALS_DIRECTORY).
    endpoints = [(hook.name, hook.url) for hook in settings.webhooks]
    health: list[EndpointHealth] = _with_store(
        settings, lambda store: store.endpoint_health(), missing=[]
    )
    rows = endpoint_rows(endpoints, health)
    if args.json:
        print_json(rows)
        return EXIT_OK
    columns = ("name", "status", "pending", "dead", "consecutive_failures", "url")
    print_rows(rows, columns, quiet=args.quiet, id_key="name", keep_whole=("name", "url"))
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from batchd.webhooks.delivery import make_session, send_test
    from batchd.webhooks.schedule import AttemptOutcome

    endpoint = _endpoint(_settings(args.config).webhook_endpoints(), args.name)

    async def run() -> tuple[str, Any]:
        async with make_session(allow_private=endpoint.allow_private) as session:
            return await send_test(session, endpoint, now=time.time())

    event_id, result = asyncio.run(run())
    shown = result.status if result.status is not None else result.error
    code = EXIT_OK if result.outcome is AttemptOutcome.DELIVERED else EXIT_FAILURE
    if args.json:
        print_json(
            {
                "endpoint": endpoint.name,
                "event_id": event_id,
                "outcome": str(result.outcome),
                "status": result.status,
                "error": result.error,
                "duration_s": round(result.duration_s, 3),
            }
        )
        return code
    print(f"{endpoint.name}: {shown} ({result.outcome}, {result.duration_s:.2f} s, id {event_id})")
    return code


def cmd_enable(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    _require_known([hook.name for hook in settings.webhooks], args.name)
    _with_store(settings, lambda store: store.enable_endpoint(args.name))
    if args.json:
        print_json({"name": args.name, "status": "enabled"})
    else:
        print(f"{args.name}: enabled")
    return EXIT_OK


def cmd_list_events(args: argparse.Namespace) -> int:
    from batchd.cli._paging import Page, check_cursor, collect

    async def listing(store: JobStore) -> Page[Event]:
        await check_cursor(args.cursor, store.get_event)

        async def fetch(after: str | None, n: int) -> list[Event]:
            return await store.list_events(
                since=args.since,
                undelivered=args.undelivered,
                limit=n,
                newest_first=True,
                after=after,
            )

        async def convert(event: Event) -> dict[str, Any]:
            return event_row(event, await store.deliveries_for(event.id))

        return await collect(fetch, convert, limit=limit_of(args), cursor=args.cursor)

    empty: Page[Event] = Page([], None)
    page = _with_store(_settings(args.config), listing, missing=empty)
    if args.json:
        print_json(page.as_json("events"))
    else:
        rows = [{**row, "delivery": delivery_summary(row)} for row in page.rows]
        print_rows(rows, ("id", "type", "created_at", "delivery"), quiet=args.quiet)
    page.warn_if_cut("events")
    return EXIT_OK


def delivery_summary(row: dict[str, Any]) -> str:
    return " ".join(f"{d['endpoint']}:{d['state']}/{d['attempts']}" for d in row["deliveries"])


def cmd_replay(args: argparse.Namespace) -> int:
    if bool(args.ids) == (args.since is not None):
        raise UsageError("give event ids or --since, not both and not neither")
    settings = _settings(args.config)

    async def replay(store: JobStore) -> int:
        missing = [i for i in args.ids if await store.get_event(i) is None]
        if missing:
            raise BatchdError(f"no such event: {', '.join(missing)}")
        return await store.replay(event_ids=args.ids, since=args.since, now=time.time())

    count = _with_store(settings, replay)
    if args.json:
        print_json({"replayed": count})
    else:
        print(f"{count} event(s) queued for delivery again")
    return EXIT_OK


# ------------------------------------------------------------------ plumbing
def _settings(config: Path | None) -> Settings:
    from batchd.config_load import load_settings

    return load_settings(config)


def _endpoint(endpoints: Sequence[WebhookEndpoint], name: str) -> WebhookEndpoint:
    _require_known([e.name for e in endpoints], name)
    return next(e for e in endpoints if e.name == name)


def _require_known(names: Sequence[str], name: str) -> None:
    if name not in names:
        known = ", ".join(names) or "none configured"
        raise UsageError(f"no webhook endpoint named {name!r} (known: {known})")


def _with_store(
    settings: Settings, action: Callable[[JobStore], Awaitable[T]], *, missing: T | None = None
) -> T:
    """Run ``action`` on the daemon's database; ``missing`` is the answer when there is no
    database yet (None: that is an error)."""
    from batchd.store.registry import StoreOptions, describe, make_store, store_exists

    url = settings.store.url
    if not store_exists(url):
        if missing is not None:
            return missing
        raise BatchdError(f"no database at {describe(url)} yet (has the daemon run?)")

    async def run() -> T:
        store = make_store(url, StoreOptions(migrate=False))
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())
