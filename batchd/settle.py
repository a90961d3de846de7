"""When a claimed file may be read, and when batchd stops waiting for it (pure).

The stability rule of intake (``min_age_s``) only guesses that a file written in place is
complete: its writer may still hold it open and write more after a pause. So a claimed file is
never submitted as it was read if it changed: batchd reads it, checks that size and mtime are
what they were before the read, and otherwise waits until the file is stable again (unchanged
for ``min_age_s`` and, as far as batchd can see, open for writing by no process) and reads it
again. A file still being written ``WRITE_WAIT_MAX_S`` after batchd first found it so, or that
changed under ``MAX_REREADS`` reads, is rejected with a reason that says so.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from batchd.clock import Clock
from batchd.spool import FileIdentity, lstat_identity
from batchd.writers import WriterCheck

WRITE_WAIT_MAX_S: Final = 600.0
MAX_REREADS: Final = 3
WRITER_POLL_S: Final = 1.0
READ: Final = "read"
_ADVICE: Final = (
    "write the file elsewhere (or as .<name>.part) and rename it into the inbox once it is "
    "complete; drop it again to retry"
)


@dataclass(slots=True)
class Unsettled:
    """A claimed file found still being written: since when, and how many reads it changed
    under."""

    since: float
    changes: int = 0


@dataclass(frozen=True, slots=True)
class Wait:
    until: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


Decision = Literal["read"] | Wait | GiveUp


def when_to_read(
    *,
    now: float,
    mtime_s: float,
    writing: bool | None,
    unsettled: Unsettled | None,
    settle_s: float,
) -> Decision:
    """Read now, wait, or give up. ``writing``: whether a process has the file open for writing
    (None: unknown). A file never found unsettled is read at once (intake's rule let it in)."""
    if unsettled is None and not writing:
        return READ
    since = now if unsettled is None else unsettled.since
    if now - since >= WRITE_WAIT_MAX_S:
        return GiveUp(still_written(f"still open for writing or changing {now - since:.0f} s"))
    if writing:
        return Wait(now + WRITER_POLL_S)
    if now - mtime_s < settle_s:
        return Wait(mtime_s + settle_s)
    return READ


def after_change(unsettled: Unsettled, *, now: float) -> Decision:
    """The file changed while it was read (``unsettled.changes`` counts this one)."""
    if unsettled.changes >= MAX_REREADS:
        return GiveUp(still_written(f"it changed while batchd read it, {unsettled.changes} times"))
    return Wait(now + WRITER_POLL_S)


def still_written(detail: str) -> str:
    return f"still being written after batchd claimed it ({detail}): {_ADVICE}"


class Settling:
    """The claimed files found still being written (keyed by submission id): since when, and
    until when intake waits before it looks again."""

    def __init__(self) -> None:
        self._files: dict[str, Unsettled] = {}
        self._until: dict[str, float] = {}

    def decide(
        self, key: str, *, now: float, mtime_s: float, writing: bool | None, settle_s: float
    ) -> Decision:
        decision = when_to_read(
            now=now,
            mtime_s=mtime_s,
            writing=writing,
            unsettled=self._files.get(key),
            settle_s=settle_s,
        )
        return self._note(key, decision, now)

    def changed(self, key: str, *, now: float) -> Decision:
        unsettled = self._files.setdefault(key, Unsettled(now))
        unsettled.changes += 1
        return self._note(key, after_change(unsettled, now=now), now)

    def _note(self, key: str, decision: Decision, now: float) -> Decision:
        if isinstance(decision, Wait):
            self._files.setdefault(key, Unsettled(now))
            self._until[key] = decision.until
        else:
            self._until.pop(key, None)
        if isinstance(decision, GiveUp):
            self.forget(key)
        return decision

    def forget(self, key: str) -> None:
        self._files.pop(key, None)
        self._until.pop(key, None)

    def unsettled(self, key: str) -> bool:
        return key in self._files

    def waiting(self, key: str) -> bool:
        return key in self._until

    def next_look(self) -> float | None:
        return min(self._until.values(), default=None)


class SettleGate:
    """The effects around ``Settling``: which files were renamed in (complete by the drop-folder
    contract, so not checked for writers on their first read), the writer check, the clock."""

    def __init__(self, clock: Clock, writers: WriterCheck | None = None) -> None:
        self._clock = clock
        self._writers = writers or WriterCheck()
        self._settling = Settling()
        self._renamed_in: set[str] = set()
        self._announced: set[str] = set()

    def claimed(self, key: str, *, renamed: bool) -> None:
        if renamed:
            self._renamed_in.add(key)

    async def before_read(
        self, key: str, path: Path, before: FileIdentity, settle_s: float
    ) -> Decision:
        writing = None
        if key not in self._renamed_in or self._settling.unsettled(key):
            writing = await asyncio.to_thread(self._writers.is_open_for_writing, path)
        decision = self._settling.decide(
            key,
            now=self._clock.now(),
            mtime_s=before.mtime_ns / 1e9,
            writing=writing,
            settle_s=settle_s,
        )
        if isinstance(decision, GiveUp):
            self.done(key)
        return decision

    def changed(self, key: str) -> Decision:
        """The file changed under a read: wait and read again, or give up."""
        decision = self._settling.changed(key, now=self._clock.now())
        if isinstance(decision, GiveUp):
            self.done(key)
        return decision

    def done(self, key: str) -> None:
        self._settling.forget(key)
        self._renamed_in.discard(key)
        self._announced.discard(key)

    def first_wait(self, key: str) -> bool:
        """True the first time ``key`` waits (to log it once)."""
        if key in self._announced:
            return False
        self._announced.add(key)
        return True

    def waiting(self, key: str) -> bool:
        return self._settling.waiting(key)

    def next_look(self) -> float | None:
        return self._settling.next_look()


def changed_since(path: Path, before: FileIdentity, read_bytes: int | None) -> bool:
    """Whether ``path`` is not what was read: size or mtime moved since ``before`` (taken just
    before the read), or the read saw another size (``read_bytes``; None: not known)."""
    after = lstat_identity(path)
    if after is None or (after.size_bytes, after.mtime_ns) != (before.size_bytes, before.mtime_ns):
        return True
    return read_bytes is not None and read_bytes != before.size_bytes
