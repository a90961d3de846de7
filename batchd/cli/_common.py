"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_HELP = "configuration file (env BATCHD_CONFIG; default /etc/batchd/batchd.toml if present)"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
