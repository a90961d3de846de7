"""``batchd jobs watch``: live progress per submission, redrawn from the store.

Each row shows the requests answered so far (as the provider reports them, re-read every
frame), the failed count, the rate over the last minute and an ETA. A submission that finishes
stays on screen with its outcome for ``keep_s`` seconds. ``--exit`` ends the watch once every
submission it has shown has finished; the exit code is then the highest of their outcomes'
codes (as ``batchd submit --wait``: 0 succeeded, 4 completed_with_errors, 5 partial,
6 failed, 7 rejected, 8 cancelled). Plain rich rendering, so it works over SSH; ``--once``
draws a single frame.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table

from batchd.cli import _output
from batchd.cli._output import console
from batchd.cli._submit import exit_code
from batchd.cli._views import progress
from batchd.models import Submission, SubmissionState
from batchd.store.base import JobStore

OPEN: Final = [SubmissionState.CLAIMING, SubmissionState.CLAIMED, SubmissionState.ACTIVE]
FINISHED: Final = [SubmissionState.DONE, SubmissionState.REJECTED, SubmissionState.ABANDONED]
RATE_WINDOW_S: Final = 60.0
MAX_ROWS: Final = 200
NOTHING: Final = "no open submissions"


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    label: str  # name (route)
    state: str  # job states while open; the outcome once finished
    completed: int
    requests: int
    failed: int
    rate: float | None  # requests per second over the last minute
    eta_s: float | None
    finished_at: float | None  # set once finished
    exit_code: int = 0

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def rate_and_eta(
    samples: deque[tuple[float, int]], remaining: int
) -> tuple[float | None, float | None]:
    """Requests per second between the oldest and newest sample, and the time the remaining
    requests take at that rate (None while there is not enough to tell)."""
    if len(samples) < 2:
        return None, None
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    if t1 <= t0:
        return None, None
    rate = max(0.0, (c1 - c0) / (t1 - t0))
    return rate, (remaining / rate if rate > 0 else None)


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class Watch:
    """The watch's memory across frames: samples for the rates, and every submission shown."""

    store: JobStore
    keep_s: float = 60.0
    clock: Callable[[], float] = time.time
    samples: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    shown: dict[str, Row] = field(default_factory=dict)

    async def rows(self) -> list[Row]:
        now = self.clock()
        subs = await self.store.list_submissions(states=OPEN, limit=MAX_ROWS)
        for sub in await self.store.list_submissions(states=FINISHED, limit=MAX_ROWS):
            recent = sub.finished_at is not None and sub.finished_at >= now - self.keep_s
            if recent or sub.id in self.shown:
                subs.append(sub)
        rows = [await self._row(sub, now) for sub in sorted(subs, key=lambda s: s.created_at)]
        self.shown.update((row.id, row) for row in rows)
        return [r for r in rows if r.finished_at is None or r.finished_at >= now - self.keep_s]

    async def _row(self, sub: Submission, now: float) -> Row:
        jobs = await self.store.jobs_for_submission(sub.id)
        figures = progress(jobs)
        finished = sub.state in FINISHED
        failed = sub.results.failed if finished and sub.results else figures["failed"]
        if finished and sub.results:  # answered in the results, not the provider's counters
            figures["completed"] = sub.results.succeeded + sub.results.failed
        samples = self.samples.setdefault(sub.id, deque())
        if not finished:
            samples.append((now, figures["completed"]))
        while len(samples) > 2 and samples[0][0] < now - RATE_WINDOW_S:
            samples.popleft()
        rate, eta = rate_and_eta(samples, figures["requests"] - figures["completed"])
        states = ",".join(sorted({j.state.value for j in jobs})) or sub.state.value
        ended = sub.outcome.value if sub.outcome else sub.state.value
        shown_state = ended if finished else states
        return Row(
            id=sub.id,
            label=f"{sub.name} ({sub.route})",
            state=shown_state,
            completed=figures["completed"],
            requests=figures["requests"],
            failed=failed,
            rate=None if finished else rate,
            eta_s=None if finished else eta,
            finished_at=(sub.finished_at or now) if finished else None,
            exit_code=exit_code(sub) if finished else 0,
        )

    def all_finished(self) -> bool:
        return all(row.finished for row in self.shown.values())

    def exit_code(self) -> int:
        return max((row.exit_code for row in self.shown.values()), default=0)


def render(rows: list[Row]) -> RenderableType:
    if not rows:
        return NOTHING
    table = Table(box=None, pad_edge=False)
    for column in ("submission", "progress", "done", "failed", "rate", "eta", "state"):
        table.add_column(column, no_wrap=column != "submission")
    for row in rows:
        table.add_row(
            row.label,
            ProgressBar(total=max(1, row.requests), completed=row.completed, width=30),
            f"{row.completed}/{row.requests}",
            str(row.failed),
            "-" if row.rate is None else f"{row.rate:.1f}/s",
            fmt_eta(row.eta_s),
            row.state,
        )
    return table


PLAIN_COLUMNS: Final = ("id", "name", "done", "requests", "failed", "rate", "eta_s", "state")


def plain(rows: list[Row]) -> str:
    """A frame for a pipe or a file: a header line and tab-separated rows, values in full."""
    from batchd.cli._output import tsv

    return tsv(
        [
            {
                "id": row.id,
                "name": row.label,
                "done": row.completed,
                "requests": row.requests,
                "failed": row.failed,
                "rate": "" if row.rate is None else f"{row.rate:.1f}",
                "eta_s": "" if row.eta_s is None else round(row.eta_s),
                "state": row.state,
            }
            for row in rows
        ],
        PLAIN_COLUMNS,
    )


async def frame(store: JobStore) -> RenderableType:
    """One frame from a fresh watch (what ``--once`` prints)."""
    return render(await Watch(store).rows())


async def watch(
    store: JobStore,
    interval_s: float,
    *,
    once: bool = False,
    exit_when_done: bool = False,
    keep_s: float = 60.0,
) -> int:
    """Draw until interrupted (or, with ``exit_when_done``, until every submission shown has
    finished); returns the exit code."""
    from rich.live import Live

    state = Watch(store, keep_s=keep_s)
    if not _output.is_terminal():
        return await _watch_piped(state, interval_s, once=once, exit_when_done=exit_when_done)
    out = console()
    if once:
        out.print(render(await state.rows()))
        return 0
    with Live(render(await state.rows()), console=out, refresh_per_second=4) as live:
        try:
            while not (exit_when_done and state.all_finished()):
                await asyncio.sleep(interval_s)
                live.update(render(await state.rows()))
        except (KeyboardInterrupt, asyncio.CancelledError):
            return 130
    return state.exit_code()


async def _watch_piped(state: Watch, interval_s: float, *, once: bool, exit_when_done: bool) -> int:
    """Not on a terminal: no live redraw; the last frame as tab-separated rows at the end."""
    rows = await state.rows()
    try:
        while not once and not (exit_when_done and state.all_finished()):
            await asyncio.sleep(interval_s)
            rows = await state.rows()
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(plain(rows))
        return 130
    print(plain(rows))
    return 0 if once else state.exit_code()
