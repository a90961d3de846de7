"""Is a claimed file still open for writing? (Linux ``/proc``, best effort.)

A file written in place may be claimed while its writer still holds it open and pauses longer
than ``min_age_s``; what it writes next lands in the claimed file. Before a file claimed that way
is read, intake asks here whether any process has it open for writing. Only processes batchd may
inspect are seen: those of its own user, or all of them when it runs as root. One scan of
``/proc`` (about 15 ms for a few hundred processes) answers for every file of a pass: it is
cached for ``MAX_AGE_S``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

PROC: Final = "/proc"
MAX_AGE_S: Final = 0.5


def open_for_writing(folder: Path, *, proc: str = PROC) -> frozenset[str] | None:
    """The real paths of the files in ``folder`` that a visible process has open write-only or
    read-write; None where ``proc`` cannot be listed (not Linux)."""
    prefix = os.path.realpath(folder) + os.sep
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return None
    found: set[str] = set()
    for pid in pids:
        found.update(_written_by(f"{proc}/{pid}", prefix))
    return frozenset(found)


def _written_by(process: str, prefix: str) -> list[str]:
    try:
        fds = os.listdir(f"{process}/fd")
    except OSError:  # another user's process, or it ended
        return []
    found = []
    for fd in fds:
        try:
            target = os.readlink(f"{process}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix) and _writable(f"{process}/fdinfo/{fd}"):
            found.append(target)
    return found


def _writable(fdinfo: str) -> bool:
    try:
        with open(fdinfo) as handle:
            for line in handle:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        return False
    return False


class WriterCheck:
    """``is_open_for_writing(path)``, with one ``/proc`` scan per folder shared by the files
    checked within ``max_age_s`` of each other (files are validated in threads). A scan older
    than the file's last rename into the folder (its ctime) is never used for it."""

    def __init__(
        self,
        *,
        max_age_s: float = MAX_AGE_S,
        scan: Callable[[Path], frozenset[str] | None] = open_for_writing,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_age_s = max_age_s
        self._scan = scan
        self._now = wall_clock
        self._cache: dict[Path, tuple[float, frozenset[str] | None]] = {}
        self._lock = threading.Lock()

    def is_open_for_writing(self, path: Path) -> bool | None:
        """True or False; None when it cannot be told (no ``/proc``)."""
        folder = path.parent
        try:
            moved_in = path.lstat().st_ctime
        except FileNotFoundError:
            return False
        with self._lock:
            now = self._now()
            cached = self._cache.get(folder)
            if cached is None or now - cached[0] > self._max_age_s or cached[0] <= moved_in:
                cached = (now, self._scan(folder))
                self._cache[folder] = cached
        writers = cached[1]
        if writers is None:
            return None
        return os.path.realpath(path) in writers
