"""Housekeeping: what batchd removes and when (``[retention]``), for the daemon and ``batchd gc``.

Three kinds of finished history, each kept ``*_days`` (0: for ever):

* ``done_days``: a finished run's results folder (``done/<name>/`` or an older run beside it),
  removed only if its ``summary.json`` still names that submission (a folder someone replaced
  is left alone);
* ``events_days``: events that were handed to the sinks and have nothing left to deliver, with
  their webhook deliveries (delivered, dead letters, dropped);
* ``rows_days``: finished submissions and their jobs, once no kept event refers to them (they
  feed ``jobs list`` and duplicate detection). At least ``done_days``: a row says where its
  folder is.

Then the database gives the freed pages back to the file system (``JobStore.compact``). The
daemon runs this every ``interval_s``; ``batchd gc`` shows what would go and, with ``--apply``,
does it at once.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from batchd.clock import Clock
from batchd.loops import Waker, report_progress
from batchd.models import SubmissionState
from batchd.placement import owner
from batchd.store.base import JobStore, PruneCounts

log = structlog.get_logger(__name__)

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    done_days: float = 0.0
    events_days: float = 30.0
    rows_days: float = 180.0
    interval_s: float = 3600.0


def cutoff(now: float, days: float) -> float | None:
    """What finished before this goes (None: ``days`` is 0, keep for ever)."""
    return None if days <= 0 else now - days * DAY_S


@dataclass(frozen=True, slots=True)
class GcReport:
    folders: tuple[Path, ...]
    counts: PruneCounts
    applied: bool
    freed_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "done_folders": [str(f) for f in self.folders],
            "submissions": self.counts.submissions,
            "jobs": self.counts.jobs,
            "events": self.counts.events,
            "deliveries": self.counts.deliveries,
            "freed_bytes": self.freed_bytes,
        }

    @property
    def anything(self) -> bool:
        return bool(self.folders) or self.counts != PruneCounts()


async def old_folders(store: JobStore, finished_before: float | None) -> list[Path]:
    """Results folders of runs finished before the cutoff that still hold those runs."""
    if finished_before is None:
        return []
    done = await store.list_submissions(states=[SubmissionState.DONE], limit=1_000_000_000)
    candidates = [
        (Path(s.results_dir), s.id)
        for s in done
        if s.results_dir and s.finished_at is not None and s.finished_at < finished_before
    ]

    def still_theirs() -> list[Path]:
        return [folder for folder, sub_id in candidates if owner(folder) == sub_id]

    return await asyncio.to_thread(still_theirs)


def _remove(folder: Path) -> bool:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return True  # removed meanwhile (batchd gc and the daemon at the same time)
    except OSError as exc:
        log.warning("retention.folder_not_removed", folder=str(folder), error=str(exc))
        return False
    return True


async def collect_garbage(
    store: JobStore, policy: RetentionPolicy, *, now: float, apply: bool, full: bool = False
) -> GcReport:
    """What the policy removes at ``now``; with ``apply`` also remove it (folders first, then
    the rows that point at them) and compact the database (``full``: rewrite it)."""
    folders = await old_folders(store, cutoff(now, policy.done_days))
    if apply:
        removed = []
        for folder in folders:
            if await asyncio.to_thread(_remove, folder):
                removed.append(folder)
                report_progress()
        folders = removed
    counts = await store.prune(
        events_before=cutoff(now, policy.events_days),
        rows_before=cutoff(now, policy.rows_days),
        apply=apply,
    )
    freed = await store.compact(full=full) if apply else 0
    return GcReport(tuple(folders), counts, applied=apply, freed_bytes=freed)


class Housekeeper:
    """The daemon's loop: ``collect_garbage`` every ``interval_s`` (the first pass at start)."""

    name = "housekeeper"

    def __init__(self, store: JobStore, *, clock: Clock, policy: RetentionPolicy) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._next_at = 0.0
        self._wake = Waker()

    def set_policy(self, policy: RetentionPolicy) -> None:
        self._policy = policy
        self._next_at = 0.0  # a new policy applies at once
        self._wake.set()

    async def run_once(self) -> int:
        now = self._clock.now()
        if now < self._next_at:
            return 0
        self._next_at = now + self._policy.interval_s
        report = await collect_garbage(self._store, self._policy, now=now, apply=True)
        if report.anything:
            log.info("retention.removed", **report.as_dict())
        return len(report.folders) + report.counts.submissions + report.counts.events

    async def wait(self) -> None:
        delay = max(0.05, self._next_at - self._clock.now())
        await self._wake.wait(delay)
