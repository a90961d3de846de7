"""``batchd run``, ``batchd check`` and ``batchd submit``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from batchd.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, print_json
from batchd.errors import BatchdError, ConfigError, IntakeRejected, StoreError, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="run the daemon (watch the inboxes, submit, track)")
    add_config_argument(run)
    run.set_defaults(handler=cmd_run)

    check = subparsers.add_parser(
        "check",
        help="configuration, daemon, database, spool folders, one quick call per provider",
        description="Checks the configuration (secrets and webhook event patterns included), "
        "whether a daemon runs on the data folder, the database, that every spool folder is "
        "writable (or creatable) by this user, and makes one short call to each provider. "
        "Exit code 0: all passed; 3: a configuration, database or spool problem; 1: a "
        "provider could not be reached.",
    )
    add_config_argument(check)
    add_json(check)
    check.set_defaults(handler=cmd_check)

    submit = subparsers.add_parser(
        "submit", help="validate a JSONL file and copy it atomically into a route's inbox"
    )
    add_config_argument(submit)
    submit.add_argument("file", type=Path, help="the JSONL batch file")
    submit.add_argument("--route", help="route name (default: the first route)")
    submit.add_argument("--as", dest="name", help="name in the inbox (default: the file's name)")
    submit.add_argument("--no-validate", action="store_true", help="copy without validating first")
    submit.set_defaults(handler=cmd_submit)


def cmd_run(args: argparse.Namespace) -> int:
    from batchd.config import load_settings
    from batchd.daemon import Daemon
    from batchd.log import configure_logging

    settings = load_settings(args.config)
    daemon = settings.daemon
    configure_logging(
        level=daemon.log_level, fmt=daemon.log_format, debug_loggers=daemon.debug_loggers
    )
    try:
        return asyncio.run(Daemon(settings, config_path=args.config).run())
    except (ConfigError, StoreError) as exc:
        print(f"batchd: start-up failed: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_check(args: argparse.Namespace) -> int:
    from batchd.check import exit_code, run_checks

    results = asyncio.run(run_checks(args.config))
    code = exit_code(results)
    if args.json:
        print_json({"ok": code == EXIT_OK, "checks": [r.as_dict() for r in results]})
        return code
    for result in results:
        line = f"{'ok  ' if result.ok else 'FAIL'} {result.check}: {result.detail}"
        print(line, file=sys.stdout if result.ok else sys.stderr)
    return code


def cmd_submit(args: argparse.Namespace) -> int:
    from batchd.config import load_settings
    from batchd.submit_file import submit_file

    settings = load_settings(args.config)
    try:
        target = submit_file(
            settings, args.file, route=args.route, name=args.name, validate=not args.no_validate
        )
    except IntakeRejected as exc:
        print(f"batchd: {args.file} is not a valid batch file:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILURE
    except FileExistsError as exc:
        raise UsageError(f"{exc.filename} already exists; choose another name with --as") from exc
    except OSError as exc:
        raise BatchdError(f"cannot copy {args.file}: {os.strerror(exc.errno or 0)}") from exc
    print(target)
    return EXIT_OK
