"""How commands print: one place for terminals and scripts alike.

* ``--json``: one JSON document on stdout (lists as ``{"<things>": [...], "truncated": ...,
  "next_cursor": ...}``).
* ``-q``: only the ids, one a line.
* otherwise, on a terminal: a table (rich); not on a terminal (a pipe, a file): tab-separated
  rows with a header line, every value in full (tabs and newlines in values become spaces).
* ``NO_COLOR`` (any non-empty value, https://no-color.org) turns colours and styles off.

Notes for people (a list was cut, where results will be) go to stderr, so stdout stays data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_quiet(parser: argparse.ArgumentParser, what: str = "ids") -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=f"print only the {what}")


def is_terminal(stream: TextIO | None = None) -> bool:
    out = sys.stdout if stream is None else stream
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get("NO_COLOR"))


def console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A rich console; ``NO_COLOR`` means no escape codes at all (no colours, no bold)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    plain = no_color()
    return Console(
        file=stream,
        force_terminal=is_terminal(stream) or None,
        no_color=plain,
        color_system=None if plain else "auto",
        highlight=False,
        width=width,
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr (never mixed into the data)."""
    print(f"batchd: {message}", file=sys.stderr)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def tsv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A header line and one line per row, tab-separated, values in full."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(cell(row.get(c)) for c in columns) for row in rows]
    return "\n".join(lines)


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    quiet: bool = False,
    id_key: str = "id",
    keep_whole: Sequence[str] = ("id",),
) -> None:
    """Rows as ids (``quiet``), a table (terminal) or tab-separated values (anything else)."""
    if quiet:
        for row in rows:
            print(row[id_key])
        return
    if not is_terminal():
        print(tsv(rows, columns))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in keep_whole, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    console().print(table)
