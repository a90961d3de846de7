"""``batchd demo``: see the whole flow in one command (emulator in-process, no key)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole flow against the built-in emulator (no config, no key)"
    )
    demo.add_argument(
        "--dir", type=Path, default=None, help="folder for the demo (default: a new temp folder)"
    )
    demo.add_argument(
        "--speed", type=float, default=3600.0, help="emulated seconds per real second"
    )
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after N seconds")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from batchd.cli._demo import main

    return main(args.dir, speed=args.speed, timeout_s=args.timeout)
