"""``batchd remote``: every provider operation from the command line, against any configured
provider (``--provider``, from ``--config``) or an ad-hoc URL (``--base-url`` with the key in
``MISTRAL_API_KEY`` or ``--api-key-file``). Tables for people, ``--json`` for scripts.

The API key never comes from a flag value (it would land in the shell history).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchd.cli import EXIT_OK
from batchd.cli.emulator_cmd import DEFAULT_PORT as EMULATOR_PORT
from batchd.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from batchd.models import JobState

Action = Callable[[Any, argparse.Namespace], Awaitable[Any]]

COMMON_EPILOG = f"""\
choosing the provider:
  --provider NAME from the configuration (--config PATH or env BATCHD_CONFIG), or the default
  provider when omitted; or, without a configuration file, --base-url URL (e.g.
  https://api.mistral.ai or an emulator at http://127.0.0.1:{EMULATOR_PORT}) with the API key in the
  environment variable MISTRAL_API_KEY or in a file named by --api-key-file.
"""


# ---------------------------------------------------------------------------- argument types


def metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def timestamp(text: str) -> float:
    """Unix seconds or ISO-8601 (``2025-01-02T03:04:05Z``; naive means UTC)."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return seconds
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def job_states(text: str) -> list[JobState]:
    """Neutral states (``running``) or Mistral statuses (``RUNNING``), comma-separated."""
    from batchd.models import PROVIDER_STATES
    from batchd.models import JobState as State
    from batchd.providers.mistral_wire import state_of

    states: list[JobState] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        state = State(token.lower()) if token.lower() in set(PROVIDER_STATES) else state_of(token)
        if state is State.UNKNOWN:
            raise argparse.ArgumentTypeError(f"unknown status {token!r}")
        states.append(state)
    return states


# ---------------------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = common.add_argument_group("provider selection")
    group.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,  # batchd --config PATH remote ... sets it too
        help="configuration file (env BATCHD_CONFIG)",
    )
    group.add_argument(
        "--provider", metavar="NAME", help="configured provider (default: the default one)"
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="ad-hoc Mistral-compatible API, key from env MISTRAL_API_KEY",
    )
    group.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="with --base-url: read the key from this file",
    )
    common.add_argument("--json", action="store_true", help="print JSON only (for scripts)")
    return common


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    action: Action,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        parents=[common],
        allow_abbrev=False,  # "--api-key X" must not pass for "--api-key-file X"
        epilog=COMMON_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=_handler, action=action)
    return parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = subparsers.add_parser(
        "remote",
        help="talk to a provider directly: batch jobs and files",
        epilog=COMMON_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = _common()
    sub = remote.add_subparsers(dest="remote_command", metavar="COMMAND")
    _register_jobs(sub, common)
    files = sub.add_parser("files", help="upload, list, get, delete, download files; signed URLs")
    _register_files(files.add_subparsers(dest="files_command", metavar="COMMAND"), common)


def _register_jobs(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    from batchd.cli import _remote_ops as ops

    listing = _leaf(sub, "list", "list batch jobs (one page, or --all)", ops.list_jobs, common)
    listing.add_argument("--page", type=int, default=0, help="0-based page (default 0)")
    listing.add_argument("--page-size", type=int, default=100, help="default 100")
    listing.add_argument("--all", action="store_true", help="walk every page from --page")
    listing.add_argument("--model", help="only jobs of this model")
    listing.add_argument("--agent-id", help="only jobs of this agent")
    listing.add_argument(
        "--metadata",
        type=metadata_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="repeatable",
    )
    listing.add_argument(
        "--created-after", type=timestamp, metavar="TIME", help="ISO-8601 or unix seconds"
    )
    listing.add_argument(
        "--created-by-me", action="store_true", help="only jobs created with this API key's user"
    )
    listing.add_argument(
        "--status",
        type=job_states,
        action="append",
        default=[],
        help="QUEUED, RUNNING, SUCCESS, ... or pending, running, succeeded, ...; "
        "repeatable or comma-separated",
    )
    listing.add_argument(
        "--order-by",
        choices=["created", "-created"],
        default="-created",
        help="by creation time, oldest (created) or newest (-created, the default) first",
    )

    create = _leaf(
        sub, "create", "create a batch job (uploads --input-file first)", ops.create_job, common
    )
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input-file",
        type=Path,
        action="append",
        metavar="PATH",
        help="local JSONL to upload; repeatable",
    )
    source.add_argument(
        "--file-id", action="append", metavar="ID", help="already uploaded input file; repeatable"
    )
    source.add_argument(
        "--requests", type=Path, metavar="PATH", help="JSONL of inline requests (<= 10000)"
    )
    create.add_argument("--endpoint", required=True, help="e.g. /v1/chat/completions")
    create.add_argument("--model", help="model for every request (or name it in each body)")
    create.add_argument("--agent-id", help="run the requests with this agent instead of a model")
    create.add_argument(
        "--metadata",
        type=metadata_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="repeatable",
    )
    create.add_argument("--timeout-hours", type=int, default=24, help="1..168 (default 24)")

    get = _leaf(sub, "get", "show one batch job", ops.get_job, common)
    get.add_argument("job_id", help="the provider's job id")
    get.add_argument(
        "--inline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask for inline results (outputs)",
    )
    for name, action, text in (
        ("cancel", ops.cancel_job, "request cancellation of a batch job"),
        ("delete", ops.delete_job, "delete a batch job"),
    ):
        leaf = _leaf(sub, name, text, action, common)
        leaf.add_argument("job_id", help="the provider's job id")


def _register_files(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    from batchd.cli import _remote_ops as ops

    upload = _leaf(
        sub, "upload", "upload a file (purpose batch by default)", ops.upload_file, common
    )
    upload.add_argument("path", type=Path, help="the local file to upload")
    upload.add_argument("--name", help="file name at the provider (default: the local name)")
    upload.add_argument(
        "--purpose", default="batch", help="batch (default), fine-tune, ocr, agentic_safety"
    )
    upload.add_argument(
        "--visibility",
        choices=["workspace", "user"],
        default="workspace",
        help="who may see the file (default workspace)",
    )
    upload.add_argument(
        "--expiry",
        type=int,
        metavar="N",
        help="sent as the upload's expiry (unit undocumented; the emulator reads hours)",
    )

    listing = _leaf(sub, "list", "list files (one page, or --all)", ops.list_files, common)
    listing.add_argument("--page", type=int, default=0, help="0-based page (default 0)")
    listing.add_argument("--page-size", type=int, default=100, help="default 100")
    listing.add_argument("--all", action="store_true", help="walk every page from --page")
    listing.add_argument("--search", help="match file names")
    listing.add_argument("--purpose", help="batch, fine-tune, ocr")
    listing.add_argument(
        "--sample-type",
        action="append",
        default=[],
        help="batch_request, batch_result, batch_error, ...; repeatable",
    )
    listing.add_argument(
        "--source", action="append", default=[], help="upload, repository, mistral; repeatable"
    )
    listing.add_argument("--mimetype", action="append", default=[], help="repeatable")
    listing.add_argument("--no-total", action="store_true", help="do not ask the provider to count")

    for name, action, text in (
        ("get", ops.get_file, "show one file's metadata"),
        ("delete", ops.delete_file, "delete a file"),
    ):
        leaf = _leaf(sub, name, text, action, common)
        leaf.add_argument("file_id", help="the provider's file id")
    download = _leaf(
        sub, "download", "download a file's content to a path", ops.download_file, common
    )
    download.add_argument("file_id", help="the provider's file id")
    download.add_argument("path", type=Path, help="destination (replaced atomically)")
    url = _leaf(sub, "url", "a signed URL to a file's content", ops.file_url, common)
    url.add_argument("file_id", help="the provider's file id")
    url.add_argument("--expiry-hours", type=int, default=24, help="1..168 (default 24)")


# ---------------------------------------------------------------------------- running


def provider_settings(args: argparse.Namespace) -> Any:
    """``ProviderSettings`` from ``--base-url`` (+ key from env/file) or the configuration."""
    from batchd.providers.base import ProviderSettings
    from batchd.secret import Secret

    if args.base_url:
        if args.provider or args.config:
            raise UsageError("--base-url excludes --provider and --config")
        return ProviderSettings(
            name="remote", base_url=args.base_url, api_key=Secret(_ad_hoc_key(args))
        )
    if args.api_key_file:
        raise UsageError("--api-key-file goes with --base-url")
    from batchd.config_load import load_settings

    return load_settings(args.config).provider_settings(args.provider)


def _ad_hoc_key(args: argparse.Namespace) -> str:
    key: str = os.environ.get("MISTRAL_API_KEY", "")
    path: Path | None = args.api_key_file
    if path is not None:
        try:
            key = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    key = key.strip()
    if not key:
        raise ConfigError("no API key: set MISTRAL_API_KEY or pass --api-key-file PATH")
    return key


def _handler(args: argparse.Namespace) -> int:
    from batchd.cli import _remote_ops as ops

    settings = provider_settings(args)
    result = asyncio.run(_call(settings, args))
    ops.show(result, as_json=args.json)
    return EXIT_OK


async def _call(settings: Any, args: argparse.Namespace) -> Any:
    import aiohttp

    from batchd.providers.registry import open_provider

    async with aiohttp.ClientSession() as session, open_provider(settings, session) as provider:
        return await args.action(provider, args)
