"""``batchd config example``: the annotated configuration shipped with the package (every key,
its default, its range and a comment; the same text as config/batchd.toml)."""

from __future__ import annotations

import argparse
import sys

EXAMPLE_RESOURCE = "config_example.toml"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="the configuration file")
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    example = sub.add_parser(
        "example",
        help="print the annotated configuration: every key, its default and what it does",
        description="Print the annotated configuration shipped with batchd, e.g. "
        "`batchd config example > /etc/batchd/batchd.toml`, then edit.",
    )
    example.set_defaults(handler=cmd_example)


def example_text() -> str:
    from importlib.resources import files

    return files("batchd").joinpath(EXAMPLE_RESOURCE).read_text(encoding="utf-8")


def cmd_example(_args: argparse.Namespace) -> int:
    sys.stdout.write(example_text())
    return 0
