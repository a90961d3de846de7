"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_HELP = "configuration file (env BATCHD_CONFIG; default /etc/batchd/batchd.toml if present)"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config`` after the subcommand. ``batchd --config F COMMAND`` works too: the top-level
    parser sets it, and this one (SUPPRESS) only overrides it when given here."""
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)


def add_top_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
