"""``batchd emulator``: run the local Mistral Files + Batch API emulator until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from batchd.cli import EXIT_OK
from batchd.errors import ConfigError, UsageError

DEFAULT_PORT = 8089  # `batchd emulator`'s port; `batchd remote --help` names it

if TYPE_CHECKING:
    from batchd.emulator import EmulatorConfig

API_KEYS_ENV = "BATCHD_EMULATOR_API_KEYS"
PROCESSING_KEYS = "queue_s, request_s, parallelism, min_run_s, finalize_s, cancel_s, jitter"
BEHAVIOUR_KEYS = (
    "error_field=object|string, cancel_terminal=ok|error, delete_active=allow|reject, "
    "invalid_id_status=422|404, missing_input_status=404|400|422, "
    "metadata_filter=honour|ignore, stable_created, "
    "default_max_tokens, embedding_dim, "
    "max_upload_bytes, max_requests_per_job, max_inline_outputs, outputs=fill|null"
)
FAULT_HELP = (
    "inject faults: KIND[:PROB][,route=PATTERN][,phase=before|after][,delay=S]"
    "[,retry_after=S][,fraction=F][,limit=N]; KIND is 429, 500, 502, 503, latency, reset, "
    "truncate (a download cut at FRACTION), short_results (a job's result files hold only "
    "FRACTION of the lines its counters count), short_counts (its counters count only "
    "FRACTION of the lines written; for these two, route matches the job's endpoint), late "
    "(the handler runs S seconds later even if the client left) or late_reset (the same, then "
    "the connection is dropped); repeatable. Example: --fault '429:0.1,retry_after=2' "
    "--fault 'reset:1,route=POST /v1/batch/jobs,phase=after,limit=1' "
    "--fault 'short_results:1,fraction=0.9,limit=1'"
)

T = TypeVar("T")
PROVIDERS = ("mistral", "openai", "anthropic")
# each emulated provider on its own port by default, so that they can run side by side
PORTS = {"mistral": DEFAULT_PORT, "openai": DEFAULT_PORT + 1, "anthropic": DEFAULT_PORT + 2}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run a local provider emulator (Mistral by default, or --provider openai|anthropic)",
        description="A faithful local Mistral Files + Batch API server (or OpenAI's Files + "
        "Batch API, or Anthropic's Message Batches, with --provider). State is in memory.",
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="mistral",
        help="which API to serve (default mistral; openai: /v1/files and /v1/batches, base URL "
        "<url>/v1 for the openai SDK; anthropic: /v1/messages/batches)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port (default {DEFAULT_PORT}; openai {PORTS['openai']}, anthropic "
        f"{PORTS['anthropic']}; 0 = any)",
    )
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=[],
        metavar="KEY",
        help=f"accepted Bearer key, repeatable (env {API_KEYS_ENV}, comma-separated); "
        "none given: any non-empty key is accepted",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="emulated seconds per real second (default 60; over 0, at most 1000000)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for ids, jitter and faults")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where file contents go (default: temp dir)"
    )
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC", help=FAULT_HELP)
    parser.add_argument(
        "--processing",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"processing model in emulated seconds, repeatable: {PROCESSING_KEYS}",
    )
    parser.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"choices for unverified behaviours, repeatable: {BEHAVIOUR_KEYS}",
    )
    parser.set_defaults(handler=cmd_emulator)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _override(default: T, items: list[str], option: str) -> T:
    from pydantic import TypeAdapter, ValidationError

    overrides = _pairs(items, option)
    if not overrides:
        return default
    data: dict[str, Any] = {**asdict(default), **overrides}  # type: ignore[call-overload]
    unknown = set(overrides) - set(asdict(default))  # type: ignore[call-overload]
    if unknown:
        raise UsageError(f"{option}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        return TypeAdapter(type(default)).validate_python(data)
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"{option}: {exc}") from exc


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    from batchd.emulator import Behaviour, EmulatorConfig, FaultConfig, ProcessingModel
    from batchd.emulator.faults import parse_fault_spec

    env_keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    try:
        rules = tuple(parse_fault_spec(spec) for spec in args.fault)
        return EmulatorConfig(
            api_keys=tuple(args.api_keys) + tuple(env_keys),
            speed=args.speed,
            seed=args.seed,
            data_dir=args.data_dir,
            processing=_override(ProcessingModel(), args.processing, "--processing"),
            behaviour=_override(Behaviour(), args.behaviour, "--behaviour"),
            faults=FaultConfig(rules=rules),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _server(provider: str) -> Any:
    if provider == "anthropic":
        from batchd.emulator.anthropic import serve_anthropic

        return serve_anthropic
    if provider == "openai":
        from batchd.emulator.openai import serve_openai

        return serve_openai
    from batchd.emulator import serve

    return serve


async def run_emulator(
    config: EmulatorConfig, host: str, port: int, provider: str = "mistral"
) -> int:
    serve = _server(provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(config, host=host, port=port) as emu:
            keys = f"{len(config.api_keys)} API key(s)" if config.api_keys else "any API key"
            print(
                f"batchd emulator listening on {emu.url} (speed {config.speed:g}x, {keys}, "
                f"{len(config.faults.rules)} fault rule(s)); admin at {emu.url}/_emulator/health",
                flush=True,
            )
            await stop.wait()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    """Start-up failures (port in use) raise ``ConfigError``: exit code 3."""
    from batchd.log import configure_logging

    configure_logging(level="info", fmt="auto")
    config = build_config(args)
    return asyncio.run(run_emulator(config, args.host, listen_port(args), args.provider))


def listen_port(args: argparse.Namespace) -> int:
    """``--port``, or the emulated provider's own default port."""
    return PORTS[args.provider] if args.port is None else int(args.port)
