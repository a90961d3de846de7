"""``batchd version``: the same line as ``batchd --version`` / ``-V``."""

from __future__ import annotations

import argparse

from batchd.cli._output import add_json, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    version = subparsers.add_parser("version", help="print the version (like -V)")
    add_json(version)
    version.set_defaults(handler=cmd_version)


def cmd_version(args: argparse.Namespace) -> int:
    from batchd import __version__

    if args.json:
        print_json({"version": __version__})
    else:
        print(f"batchd {__version__}")
    return 0
