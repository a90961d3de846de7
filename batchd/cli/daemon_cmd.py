"""``batchd run``, ``batchd check`` and ``batchd submit``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from batchd.cli import EXIT_CONFIG, EXIT_OK
from batchd.cli._common import add_config_argument
from batchd.cli._output import add_json, note, print_json
from batchd.cli._submit import (
    EXIT_HELP,
    EXIT_REJECTED,
    EXIT_WAIT_TIMEOUT,
    earlier_duplicate,
    exit_code,
    validation_bar,
    view,
    wait,
)
from batchd.errors import (
    BatchdError,
    ConfigError,
    IntakeRejected,
    Problem,
    StoreError,
    UsageError,
)


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
        "submit",
        help="validate a JSONL file and copy it atomically into a route's inbox",
        description="Validate a batch file as the daemon would (a progress bar on a terminal), "
        "refuse content the daemon would refuse as a duplicate, and copy it atomically into "
        "the route's inbox; prints the inbox path. With --wait, wait for the outcome and "
        "print the results folder.",
        epilog=EXIT_HELP,
    )
    add_config_argument(submit)
    submit.add_argument("file", type=Path, help="the JSONL batch file")
    submit.add_argument("--route", help="route name (default: the first route)")
    submit.add_argument("--as", dest="name", help="name in the inbox (default: the file's name)")
    submit.add_argument("--no-validate", action="store_true", help="copy without validating first")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until the submission has finished; exit by its outcome (see below)",
    )
    submit.add_argument(
        "--wait-timeout",
        type=float,
        metavar="S",
        help="with --wait: stop waiting after S seconds (exit 9; the submission carries on)",
    )
    add_json(submit)
    _add_option_flags(submit)
    submit.set_defaults(handler=cmd_submit)


def _add_option_flags(submit: argparse.ArgumentParser) -> None:
    """Per-file options, written as the sidecar <name>.jsonl.json next to the file (checked
    when the command runs: importing the configuration models here would slow --help)."""
    submit.add_argument("--model", help="the model for this file (default: the route's)")
    submit.add_argument(
        "--endpoint",
        metavar="PATH",
        help="the endpoint for this file, e.g. /v1/embeddings (default: the route's)",
    )
    submit.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="metadata for this file's jobs, over the route's (repeat for several)",
    )
    submit.add_argument(
        "--timeout-hours", type=int, metavar="H", help="job timeout for this file (1 to 168)"
    )
    submit.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="accept this file even if the same content already ran",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from batchd.config_load import load_settings
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
    from batchd.config_load import load_settings
    from batchd.options import options_from_flags

    settings = load_settings(args.config)
    args.options = options_from_flags(
        model=args.model,
        endpoint=args.endpoint,
        metadata=args.metadata,
        timeout_hours=args.timeout_hours,
        allow_duplicate=args.allow_duplicate,
    )
    try:
        ready = _prepare(settings, args)
    except IntakeRejected as exc:
        duplicate = any(str(p).startswith("duplicate:") for p in exc.problems)
        why = "is a duplicate" if duplicate else "is not a valid batch file"
        print(f"batchd: {args.file} {why}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        if args.json:
            print_json({"rejected": True, "reason": [str(p) for p in exc.problems]})
        return EXIT_REJECTED
    since = time.time()
    target = _copy(args.file, ready.inbox, ready.name, args.options)
    shown: dict[str, Any] = {"path": str(target), "route": ready.route, "name": ready.name}
    if not args.wait:
        if args.json:
            print_json(shown)
        else:
            print(target)
        return EXIT_OK
    if not args.json:
        print(target)
    sub = wait(settings, ready.route, ready.name, since, args.wait_timeout)
    if sub is None:
        note(f"{ready.name}: still running after {args.wait_timeout:g} s")
        if args.json:
            print_json({**shown, "finished": False})
        return EXIT_WAIT_TIMEOUT
    code = exit_code(sub)
    if args.json:
        print_json({**shown, "finished": True, **view(sub), "exit_code": code})
        return code
    outcome = sub.outcome.value if sub.outcome else sub.state.value
    note(f"{ready.name}: {outcome}" + (f" ({sub.reason.splitlines()[0]})" if sub.reason else ""))
    print(sub.results_dir or sub.reason or "")
    return code


def _prepare(settings: Any, args: argparse.Namespace) -> Any:
    """Validate (with a progress bar on a terminal) and refuse a known duplicate."""
    from batchd.submit_file import file_sha256, prepare
    from batchd.validate import duplicate_reason

    try:
        size = args.file.stat().st_size
        with validation_bar(size, args.file.name) as progress:
            ready = prepare(
                settings,
                args.file,
                route=args.route,
                name=args.name,
                validate=not args.no_validate,
                progress=progress,
                endpoint=args.endpoint,
            )
        if settings.intake.duplicates == "reject" and not args.allow_duplicate:
            sha256 = ready.sha256 or file_sha256(args.file)
            earlier = earlier_duplicate(settings, ready.route, sha256)
            if earlier is not None:
                raise IntakeRejected([Problem(0, duplicate_reason(earlier))])
    except OSError as exc:
        raise BatchdError(f"cannot read {args.file}: {os.strerror(exc.errno or 0)}") from exc
    return ready


def _copy(source: Path, inbox: Path, name: str, options: Any = None) -> Path:
    from batchd.options import copy_with_sidecar

    try:
        return copy_with_sidecar(source, inbox, name, options)
    except FileExistsError as exc:
        raise UsageError(f"{exc.filename} already exists; choose another name with --as") from exc
    except OSError as exc:
        raise BatchdError(f"cannot copy {source}: {os.strerror(exc.errno or 0)}") from exc
