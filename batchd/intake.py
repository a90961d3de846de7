"""Watch the drop folders and decide when a dropped file is complete, then claim it.

A file is taken when it was renamed into the inbox (inotify ``IN_MOVED_TO``), or when its
modification time is at least ``min_age_s`` old with size, mtime and inode unchanged across two
scans (writers that write in place, network filesystems, files found at start-up). Dotfiles,
``*.part`` and sidecars are ignored. inotify only wakes the loop; a full rescan runs at start-up,
after an overflow and every ``scan_interval_s``. A claimed file that turns out to be still
written is waited for and read again (``batchd.settle``); one whose claim or validation raises
is retried a few times, then moved to rejected/ (``batchd.retries``); if even that fails
(rejected/ replaced by a link, a full disk) it stays in processing/ and is tried again with
backoff until rejected/ can take it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from batchd.claims import Claimer, RouteLike, spool_paths
from batchd.clock import Clock
from batchd.config import Settings
from batchd.loops import Waker, gather_bounded
from batchd.models import Submission, SubmissionState
from batchd.retries import RetryBook
from batchd.spool import (
    PRIVATE,
    Modes,
    display_name,
    is_ignored,
    remove_stale_temp_files,
)
from batchd.store.base import JobStore
from batchd.watch import InboxWatcher

log = structlog.get_logger(__name__)

SECOND_LOOK_S = 0.5  # the two scans of the stability rule are at least this far apart
# Files claimed and validated at once: their fsyncs and commits overlap (measured: 1,000 files
# dropped at once are accepted ~2x faster than one at a time; tests/benchmarks, intake).
CLAIM_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Sighting:
    size_bytes: int
    mtime_ns: int
    ino: int
    seen_at: float


def is_complete(
    previous: Sighting | None, current: Sighting, *, now: float, min_age_s: float, renamed: bool
) -> bool:
    """The completeness rule (pure)."""
    if renamed:
        return True
    if previous is None or now - previous.seen_at < SECOND_LOOK_S:
        return False
    return not _changed(previous, current) and now - current.mtime_ns / 1e9 >= min_age_s


def _changed(a: Sighting, b: Sighting) -> bool:
    return (a.size_bytes, a.mtime_ns, a.ino) != (b.size_bytes, b.mtime_ns, b.ino)


def next_look_at(sighting: Sighting, *, min_age_s: float) -> float:
    return max(sighting.seen_at + SECOND_LOOK_S, sighting.mtime_ns / 1e9 + min_age_s)


class Intake:
    name = "intake"

    def __init__(
        self,
        store: JobStore,
        claimer: Claimer,
        routes: Sequence[RouteLike],
        *,
        clock: Clock,
        min_age_s: float = 2.0,
        scan_interval_s: float = 30.0,
        use_inotify: bool = True,
        on_accepted: Callable[[], None] = lambda: None,
        modes: Modes = PRIVATE,
    ) -> None:
        self._store = store
        self._claimer = claimer
        self.modes = modes  # of the spool folders created here (done/, rejected/)
        self._clock = clock
        self._min_age_s = min_age_s
        self._scan_interval_s = scan_interval_s
        self._use_inotify = use_inotify
        self._on_accepted = on_accepted
        self._routes: dict[str, RouteLike] = {r.name: r for r in routes if r.spool is not None}
        self._seen: dict[tuple[str, str], Sighting] = {}
        self._renamed: set[tuple[Path, str]] = set()
        self._wake = Waker()
        self._watcher = InboxWatcher(self._wake.set, self._note_renamed, self._wake.set)
        self._next_look: float | None = None
        self._retries = RetryBook()
        self._held: set[tuple[str, str]] = set()  # (route, name) of a claim being retried
        self._given_up: set[tuple[str, str, int]] = set()  # (route, name, inode) left alone
        self._folders: set[tuple[str, str]] = set()  # folders in an inbox, logged once
        self.scans = 0

    # ------------------------------------------------------------------ configuration
    def set_routes(self, routes: Sequence[RouteLike]) -> None:
        """Apply a reloaded configuration; in-flight submissions keep their own settings. Only
        the routes with a spool have a drop folder to watch."""
        routes = [r for r in routes if r.spool is not None]
        self._routes = {r.name: r for r in routes}
        for route in routes:
            spool_paths(route).ensure(self.modes)
        if self._watcher.active:
            self._watcher.stop()
            self._watcher.start(spool_paths(r).inbox for r in routes)
        self._wake.set()

    def apply(self, settings: Settings, modes: Modes) -> None:
        """``sources.Source``: a reloaded configuration's modes and routes."""
        self.modes = modes
        self.set_routes(settings.routes)

    def start(self) -> None:
        for route in self._routes.values():
            paths = spool_paths(route)
            paths.ensure(self.modes)
            # A reason file whose writer was killed: it is written again when the file is.
            remove_stale_temp_files(paths.rejected)
        if self._use_inotify:
            self._watcher.start(spool_paths(r).inbox for r in self._routes.values())

    def close(self) -> None:
        self._watcher.stop()

    def wake(self) -> None:
        self._wake.set()

    def _note_renamed(self, inbox: Path, name: str) -> None:
        self._renamed.add((inbox, name))

    # ------------------------------------------------------------------ one pass
    async def run_once(self) -> int:
        """Finish half-done claims, scan every inbox, claim and validate what is complete."""
        self._next_look = None
        done = await self.resume()
        for route in list(self._routes.values()):
            done += await self._scan_route(route)
        when = self._claimer.settle.next_look()  # a claimed file still being written
        if when is not None:
            self._schedule(when)
        self.scans += 1
        return done

    async def resume(self) -> int:
        """Finish the claims and validations left open (by a crash, or by a failure that is
        being retried). A failing one waits longer each time and is given up after a few."""
        open_states = [SubmissionState.CLAIMING, SubmissionState.CLAIMED]
        done = 0
        held: set[tuple[str, str]] = set()
        now = self._clock.now()
        for sub in reversed(await self._store.list_submissions(states=open_states)):
            if not self._claimer.sees(sub):
                continue  # another source's, or a file another host claimed: not ours to touch
            route = self._routes.get(sub.route)
            if route is None:
                log.warning("intake.route_missing", submission_id=sub.id, route=sub.route)
                continue
            if Path(self._claimer.processing_of(sub)).parent != spool_paths(route).processing:
                continue  # written by a queue source (batchd.queues.commit), which resumes it
            key = ("submission", sub.id)
            if not self._retries.due(key, now):
                self._schedule_retry(key)
            elif await self._process(sub, route):
                done += not self._claimer.settle.waiting(sub.id)
                continue
            if sub.state is SubmissionState.CLAIMING:  # its file may still be in the inbox
                held.add((sub.route, sub.name))
        self._held = held
        return done

    async def _process(self, sub: Submission, route: RouteLike) -> bool:
        """Resume one open submission; False (logged, retried later or given up) if it raised."""
        key = ("submission", sub.id)
        try:
            if await self._claimer.resume(sub, route, settle_s=self._min_age_s):
                self._on_accepted()
        except Exception as exc:  # one file must not stop the others, nor the scan
            fields = {"submission_id": sub.id, "name": sub.name}
            tries = self._failed(key, exc, "intake.resume_failed", **fields)
            if tries >= self._retries.max_tries:
                await self._give_up(sub, route, exc, tries)
            return False
        self._retries.forget(key)
        return True

    def _failed(self, key: tuple[str, ...], exc: Exception, event: str, **fields: object) -> int:
        """Count a failure and log it: the traceback once, then one line per try."""
        tries = self._retries.failed(key, self._clock.now())
        self._schedule_retry(key)
        fields |= {"tries": tries, "max_tries": self._retries.max_tries, "error": _error(exc)}
        if tries == 1:
            log.exception(event, **fields)
        else:
            log.warning(event, **fields)
        return tries

    def _schedule_retry(self, key: tuple[str, ...]) -> None:
        when = self._retries.next_at(key)
        if when is not None:
            self._schedule(when)

    async def _give_up(self, sub: Submission, route: RouteLike, exc: Exception, tries: int) -> None:
        key = ("submission", sub.id)
        try:
            await self._claimer.give_up(sub, route, _give_up_reason(exc, tries))
        except Exception as again:  # rejected/ is unusable now (a link, a full disk): the
            # failure stays counted, so the next try comes after the backoff (at most a minute)
            fields: dict[str, object] = {"submission_id": sub.id, "name": sub.name}
            fields |= {"error": _error(again), "retry_at": self._retries.next_at(key)}
            if tries == self._retries.max_tries:  # the traceback once, then one line per try
                log.exception("intake.give_up_failed", **fields)
            else:
                log.warning("intake.give_up_failed", **fields)
            return
        self._retries.forget(key)

    async def _scan_route(self, route: RouteLike) -> int:
        inbox = spool_paths(route).inbox
        now = self._clock.now()
        try:
            entries = list(os.scandir(inbox))
        except OSError as exc:
            log.exception("intake.scan_failed", route=route.name, error=str(exc))
            return 0
        present = set()
        ready = []
        for entry in sorted(entries, key=lambda e: e.name):
            if is_ignored(entry.name):
                continue
            present.add(entry.name)
            if entry.is_dir(follow_symlinks=False):
                self._note_folder(route.name, entry.name)
            elif self._may_take(route.name, entry):
                renamed = (inbox, entry.name) in self._renamed  # _is_ready forgets it
                if self._is_ready(route, inbox, entry, now):
                    ready.append((entry.name, renamed))
        self._forget_missing(route.name, inbox, present)
        taken: list[str] = []

        async def take(item: tuple[str, bool]) -> None:
            if await self._take(route, *item):
                taken.append(item[0])

        await gather_bounded(ready, take, limit=CLAIM_CONCURRENCY)
        return len(taken)

    def _is_ready(self, route: RouteLike, inbox: Path, entry: os.DirEntry[str], now: float) -> bool:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return False
        key = (route.name, entry.name)
        current = Sighting(st.st_size, st.st_mtime_ns, st.st_ino, now)
        renamed = (inbox, entry.name) in self._renamed
        if not is_complete(
            self._seen.get(key), current, now=now, min_age_s=self._min_age_s, renamed=renamed
        ):
            previous = self._seen.get(key)
            if previous is None or _changed(previous, current):
                self._seen[key] = current
            self._schedule(next_look_at(self._seen[key], min_age_s=self._min_age_s))
            return False
        self._seen.pop(key, None)
        self._renamed.discard((inbox, entry.name))
        return True

    def _may_take(self, route: str, entry: os.DirEntry[str]) -> bool:
        """False for a file given up, and while a failed claim waits for its next try."""
        if (route, display_name(entry.name)) in self._held:
            return False
        if (route, entry.name, entry.inode()) in self._given_up:
            return False
        key = ("file", route, entry.name)
        if self._retries.due(key, self._clock.now()):
            return True
        self._schedule_retry(key)
        return False

    def _note_folder(self, route: str, name: str) -> None:
        if (route, name) not in self._folders:
            self._folders.add((route, name))
            log.warning(
                "intake.folder_ignored",
                route=route,
                name=display_name(name),
                reason="a folder, not a batch file: batchd takes only files from the inbox",
            )

    async def _take(self, route: RouteLike, name: str, renamed: bool = False) -> bool:
        """Claim and validate one complete file. A failure is logged and retried later, and
        given up after a few tries (the claim, once committed, is resumed on the next pass)."""
        key = ("file", route.name, name)
        try:
            sub = await self._claimer.claim(route, name, renamed=renamed)
        except Exception as exc:  # one bad file must not stop the others
            shown = display_name(name)
            tries = self._failed(key, exc, "intake.claim_failed", route=route.name, name=shown)
            if tries >= self._retries.max_tries:
                await self._give_up_unclaimed(route, name, exc, tries)
            return False
        self._retries.forget(key)
        if sub is None:
            return False
        await self._process(sub, route)
        return True

    async def _give_up_unclaimed(
        self, route: RouteLike, name: str, exc: Exception, tries: int
    ) -> None:
        self._retries.forget(("file", route.name, name))
        inbox = spool_paths(route).inbox
        try:
            await self._claimer.give_up_unclaimed(route, name, _give_up_reason(exc, tries))
        except Exception as again:
            with contextlib.suppress(OSError):
                self._given_up.add((route.name, name, (inbox / name).lstat().st_ino))
            log.exception(
                "intake.give_up_failed",
                route=route.name,
                name=display_name(name),
                error=_error(again),
                action="left in the inbox; batchd looks at it again when it changes or restarts",
            )

    def _forget_missing(self, route: str, inbox: Path, present: set[str]) -> None:
        for key in [k for k in self._seen if k[0] == route and k[1] not in present]:
            del self._seen[key]
        self._folders -= {(r, n) for r, n in self._folders if r == route and n not in present}
        self._given_up -= {g for g in self._given_up if g[0] == route and g[1] not in present}
        self._retries.forget_if(
            lambda k: isinstance(k, tuple) and k[:2] == ("file", route) and k[2] not in present
        )
        # A name renamed in and gone (or ignored) before the scan: a later file written in
        # place under that name must wait for the stability rule.
        self._renamed -= {(d, n) for d, n in self._renamed if d == inbox and n not in present}

    def _schedule(self, when: float) -> None:
        self._next_look = when if self._next_look is None else min(self._next_look, when)

    # ------------------------------------------------------------------ the loop
    def wait_s(self) -> float:
        """How long the loop may sleep before the next pass is due."""
        delay = self._scan_interval_s
        if self._next_look is not None:
            delay = min(delay, max(0.05, self._next_look - self._clock.now()))
        return delay

    async def wait(self) -> None:
        """Sleep until woken by inotify, a pending stability check or the rescan timer."""
        await self._wake.wait(self.wait_s())


def _error(exc: BaseException) -> str:
    """One line naming the error, printable and short (paths in it may carry odd names)."""
    return display_name(f"{type(exc).__name__}: {exc}")[:300]


def _give_up_reason(exc: BaseException, tries: int) -> str:
    return (
        f"batchd failed {tries} times to claim or validate this file (last error: {_error(exc)})"
        " and gave up on it; drop it again to retry, and report the error if it persists"
    )
