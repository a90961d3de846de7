"""``batchd jobs watch``: live progress bars per open submission, redrawn from the store.

Plain rich rendering, so it works over SSH; ``--once`` draws a single frame (and is what tests
and scripts use)."""

from __future__ import annotations

import asyncio

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from batchd.cli._views import progress
from batchd.models import SubmissionState
from batchd.store.base import JobStore

OPEN = [SubmissionState.CLAIMED, SubmissionState.ACTIVE]


async def frame(store: JobStore) -> Group | str:
    subs = await store.list_submissions(states=OPEN, limit=100)
    if not subs:
        return "no open submissions"
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
    )
    for sub in reversed(subs):
        jobs = await store.jobs_for_submission(sub.id)
        figures = progress(jobs)
        states = ",".join(sorted({j.state.value for j in jobs})) or sub.state.value
        bars.add_task(
            f"{sub.name} ({sub.route})",
            total=max(1, figures["requests"]),
            completed=figures["completed"],
            states=states,
        )
    return Group(bars)


async def watch(store: JobStore, interval_s: float, *, once: bool = False) -> None:
    console = Console()
    if once:
        console.print(await frame(store))
        return
    with Live(await frame(store), console=console, refresh_per_second=4) as live:
        try:
            while True:
                await asyncio.sleep(interval_s)
                live.update(await frame(store))
        except (KeyboardInterrupt, asyncio.CancelledError):
            return
