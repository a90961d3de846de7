"""The ``batchd`` command line: a thin layer over the programmatic API.

Each module in this package that defines ``register(subparsers)`` adds its commands; a command
sets ``handler`` (``(argparse.Namespace) -> int``) with ``set_defaults``. Modules import their heavy
dependencies inside handlers so that ``batchd --help`` stays fast.

Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 start-up or configuration failure; commands
that report an outcome add their own above 3 (``status``: 4 busy; ``submit --wait``: by outcome).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from batchd.cli._common import add_top_config_argument
from batchd.errors import AuthError, BatchdError, ConfigError, ProviderError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3

Handler = Callable[[argparse.Namespace], int]


class _CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    from batchd import __version__

    parser = argparse.ArgumentParser(
        prog="batchd",
        description="Drop JSONL batch files in a folder; get ordered, verified results back.",
        epilog="environment: BATCHD_CONFIG (the configuration file), and one variable per "
        "setting, BATCHD_<SECTION>__<KEY> (e.g. BATCHD_DAEMON__LOG_LEVEL=debug); every key "
        "and its default is in the annotated configuration: batchd config example",
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"batchd {__version__}", help="the version"
    )
    add_top_config_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            cast(_CommandModule, module).register(subparsers)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (testable without a process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command not in {"run", "emulator"}:  # these configure logging themselves
        from batchd.log import configure_logging

        # Commands print their results on stdout (--json included); logs go to stderr.
        configure_logging(level="warning", fmt="console", stream=sys.stderr)
    try:
        return handler(args)
    except UsageError as exc:
        _fail(f"usage error: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return EXIT_CONFIG
    except AuthError as exc:
        _fail(f"authentication failed: {exc}")
        return EXIT_FAILURE
    except ProviderError as exc:
        _fail(f"provider error: {exc}")
        return EXIT_FAILURE
    except BatchdError as exc:
        _fail(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> None:
    print(f"batchd: {message}", file=sys.stderr)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
