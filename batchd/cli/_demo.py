"""``batchd demo``: the whole flow in one command, with no configuration and no API key.

It writes a small configuration into a fresh folder (so you can read and reuse it), starts the
daemon in-process with the emulator as provider, drops three sample files (chat completions, a
file with per-request failures and OpenAI-style lines, and embeddings), shows live progress, and
prints where the results are.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from batchd.cli._output import console as make_console
from batchd.cli._watch import Watch, render
from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.log import configure_logging
from batchd.models import Submission, SubmissionState
from batchd.submit_file import submit_file

QUESTIONS = [
    "What is a batch API?",
    "Name three prime numbers.",
    "Why is the sky blue?",
    "Summarise the water cycle.",
    "What does SQLite's WAL mode do?",
    "Explain backoff with jitter.",
    "What is an idempotency key?",
    "Define exactly-once delivery.",
    "What is inotify?",
    "Translate 'good morning' into French.",
    "What is a webhook?",
    "Explain fsync in one line.",
]

CONFIG = """\
# Written by `batchd demo`. Run the same thing yourself with:
#   batchd run --config {config}
[daemon]
data_dir = "{state}"
log_format = "json"

[intake]
min_age_s = 0.5
scan_interval_s = 5

[track]
poll_initial_s = 0.5
poll_max_s = 2

[collect]
retry_base_s = 0.5

[providers.emulator]
kind = "emulator"
emulator_speed = {speed}

[[routes]]
name = "chat"
spool = "{root}/chat"
provider = "emulator"
endpoint = "/v1/chat/completions"
model = "mistral-small-latest"

[[routes]]
name = "embeddings"
spool = "{root}/embeddings"
provider = "emulator"
endpoint = "/v1/embeddings"
model = "mistral-embed"
"""


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def sample_files(folder: Path) -> list[tuple[Path, str]]:
    """Three sample inputs and the route each goes to."""
    folder.mkdir(parents=True, exist_ok=True)
    chat = [
        {
            "custom_id": f"q{i}",
            "body": {"messages": [{"role": "user", "content": q}], "max_tokens": 32},
        }
        for i, q in enumerate(QUESTIONS)
    ]
    mixed: list[dict[str, Any]] = [
        {
            "custom_id": "openai-style",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "Hello from an OpenAI-style line"}]},
        },
        {"body": {"messages": [{"role": "user", "content": "A line without custom_id"}]}},
        {"custom_id": "no-messages", "body": {"temperature": 0.2}},
        {"custom_id": "bad-role", "body": {"messages": [{"role": "wizard", "content": "hi"}]}},
        {"custom_id": "fine", "body": {"messages": [{"role": "user", "content": "Still fine"}]}},
    ]
    embeddings = [{"custom_id": f"e{i}", "body": {"input": [q]}} for i, q in enumerate(QUESTIONS)]
    files = [
        (folder / "questions.jsonl", "chat", chat),
        (folder / "with-failures.jsonl", "chat", mixed),
        (folder / "embeddings.jsonl", "embeddings", embeddings),
    ]
    for path, _, records in files:
        path.write_text(_lines(records))
    return [(path, route) for path, route, _ in files]


async def run_demo(directory: Path, *, speed: float, timeout_s: float) -> int:
    console = make_console()  # honours NO_COLOR
    config = directory / "batchd.toml"
    config.write_text(
        CONFIG.format(config=config, state=directory / "state", root=directory, speed=speed)
    )
    settings = load_settings(config)
    log_file = (directory / "batchd.log").open("a")
    configure_logging(level="info", fmt="json", stream=log_file)
    daemon = Daemon(settings, config_path=config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        console.print(f"[bold]batchd demo[/bold] in {directory} (emulator at {speed:g}x speed)")
        for path, route in sample_files(directory / "samples"):
            target = submit_file(settings, path, route=route)
            console.print(f"  dropped {path.name} into {target.parent}")
        finished = await _follow(daemon, task, console, expected=3, timeout_s=timeout_s)
    finally:
        daemon.request_stop()
        code = await task
        log_file.close()
    _report(console, finished, directory)
    return 0 if code == 0 and len(finished) == 3 else 1


async def _follow(
    daemon: Daemon,
    task: asyncio.Task[int],
    console: Console,
    *,
    expected: int,
    timeout_s: float,
) -> list[Submission]:
    """Show progress until ``expected`` submissions are done, the daemon stops, or time runs
    out. The store is only read while the daemon (which owns it) is running."""
    assert daemon.runtime is not None
    store = daemon.runtime.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    watch = Watch(store)  # kept across frames: rates and ETAs
    first = render(await watch.rows())
    with Live(first, console=console, refresh_per_second=4, transient=True) as live:
        while loop.time() < deadline and not task.done():
            done = await store.list_submissions(states=[SubmissionState.DONE])
            if len(done) >= expected:
                return done
            await asyncio.sleep(0.25)
            live.update(render(await watch.rows()))
    if task.done():
        console.print("[red]the daemon stopped early; see the log[/red]")
        return []
    console.print(f"[red]timed out after {timeout_s:g} s[/red]")
    return await store.list_submissions(states=[SubmissionState.DONE])


def _report(console: Console, finished: list[Submission], directory: Path) -> None:
    table = Table(title="results")
    for column in ("file", "outcome", "requests", "succeeded", "failed"):
        table.add_column(column)
    for sub in sorted(finished, key=lambda s: s.name):
        counts = json.loads(Path(sub.results_dir or "", "summary.json").read_text())["counts"]
        table.add_row(
            sub.name,
            sub.outcome.value if sub.outcome else "-",
            str(counts["requests"]),
            str(counts["succeeded"]),
            str(counts["failed"] + counts["missing"]),
        )
    console.print(table)
    for sub in sorted(finished, key=lambda s: s.name):
        console.print(f"  {sub.name}: {sub.results_dir}/", soft_wrap=True)
    console.print(
        "Each folder holds results.jsonl (one line per request, in input order), errors.jsonl "
        "(the failed ones), summary.json (counts, timings, token usage) and input.jsonl."
    )
    console.print(f"configuration: {directory / 'batchd.toml'}", soft_wrap=True)
    console.print(f"log: {directory / 'batchd.log'}", soft_wrap=True)


def main(directory: Path | None, *, speed: float, timeout_s: float) -> int:
    folder = directory or Path(tempfile.mkdtemp(prefix="batchd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(run_demo(folder.resolve(), speed=speed, timeout_s=timeout_s))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
