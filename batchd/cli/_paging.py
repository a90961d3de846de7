"""Lists that say when they were cut, and let scripts page through everything.

``jobs list`` and ``events list`` share these semantics: newest first; ``--limit N`` shows the
N newest (default 50); ``--all`` shows every one; when more exist than were shown, the JSON has
``"truncated": true`` and ``"next_cursor"`` (the id of the last row shown), a note goes to
stderr, and ``--cursor ID`` lists the rows after that one.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from batchd.cli._output import note
from batchd.errors import UsageError

DEFAULT_LIMIT = 50
BATCH = 200
PAGING_HELP = (
    f"Shows the {DEFAULT_LIMIT} newest unless --limit or --all; when more exist, a note on stderr "
    'says so, and --json has "truncated": true and "next_cursor" (pass it to --cursor).'
)


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[tuple[T, dict[str, Any]]]  # each listed item and its row
    next_cursor: str | None  # set when more rows exist after the last one shown

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for _, row in self.items]

    def as_json(self, key: str) -> dict[str, Any]:
        truncated = self.next_cursor is not None
        return {key: self.rows, "truncated": truncated, "next_cursor": self.next_cursor}

    def warn_if_cut(self, what: str) -> None:
        if self.next_cursor is not None:
            note(
                f"more {what} than shown: --all lists every one, "
                f"--cursor {self.next_cursor} the next page"
            )


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def add_paging(parser: argparse.ArgumentParser, what: str) -> None:
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--limit",
        type=positive,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show the N newest {what} (default {DEFAULT_LIMIT}); when more exist, a note on "
        "stderr and next_cursor in --json say so",
    )
    amount.add_argument("--all", action="store_true", help=f"show every {what.rstrip('s')}")
    parser.add_argument(
        "--cursor",
        metavar="ID",
        help="continue after this row (the next_cursor of the previous page)",
    )


def limit_of(args: argparse.Namespace) -> int | None:
    return None if args.all else int(args.limit)


Fetch = Callable[[str | None, int], Awaitable[Sequence[T]]]
Convert = Callable[[T], Awaitable[dict[str, Any] | None]]


async def collect(
    fetch: Fetch[T], convert: Convert[T], *, limit: int | None, cursor: str | None
) -> Page[T]:
    """Rows from ``fetch(after, n)`` (newest first), converted (None: filtered out), until
    ``limit`` rows are found (None: all). ``next_cursor`` is set only when another row exists."""
    items: list[tuple[T, dict[str, Any]]] = []
    while True:
        want = BATCH if limit is None else max(BATCH, limit + 1 - len(items))
        found = await fetch(cursor, want)
        for item in found:
            row = await convert(item)
            if row is None:
                continue
            if limit is not None and len(items) == limit:
                return Page(items, next_cursor=items[-1][0].id)
            items.append((item, row))
        if len(found) < want:
            return Page(items, next_cursor=None)
        cursor = found[-1].id


async def check_cursor(cursor: str | None, exists: Callable[[str], Awaitable[object]]) -> None:
    if cursor is not None and await exists(cursor) is None:
        raise UsageError(f"--cursor {cursor}: no such row (use a next_cursor from a listing)")
