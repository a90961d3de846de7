"""Wake intake when something lands in an inbox, and say which names were renamed in.

inotify (through ``inotify_simple``) gives ``IN_MOVED_TO``: a file renamed into the inbox is
complete the moment it appears, which is the drop-folder contract. Everything else (creates,
writes, closes) only wakes intake, which then applies the stability rule. inotify can overflow
and does not work on network filesystems, so intake also rescans on a timer; when inotify is not
available at all the watcher degrades to that timer alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

try:  # Linux only; elsewhere intake polls.
    from inotify_simple import INotify, flags
except (ImportError, OSError):  # pragma: no cover - non-Linux
    INotify = None
    flags = None


class InboxWatcher:
    """Feeds ``on_renamed(inbox, name)`` for rename-ins and ``on_change()`` for any event;
    ``on_overflow()`` when the kernel queue overflowed (a full rescan is due)."""

    def __init__(
        self,
        on_change: Callable[[], None],
        on_renamed: Callable[[Path, str], None],
        on_overflow: Callable[[], None],
    ) -> None:
        self._on_change = on_change
        self._on_renamed = on_renamed
        self._on_overflow = on_overflow
        self._inotify: object | None = None
        self._dirs: dict[int, Path] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def start(self, inboxes: Iterable[Path]) -> bool:
        """Watch the inboxes; False (and a warning) when inotify is unavailable."""
        if INotify is None or flags is None:
            log.warning("intake.inotify_unavailable", reason="inotify_simple not importable")
            return False
        try:
            ino = INotify(nonblocking=True)
            mask = flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE | flags.MODIFY
            for inbox in inboxes:
                self._dirs[ino.add_watch(inbox, mask)] = inbox
        except OSError as exc:
            log.warning("intake.inotify_unavailable", reason=str(exc))
            return False
        self._inotify = ino
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ino.fileno(), self._drain)
        return True

    def stop(self) -> None:
        ino, self._inotify = self._inotify, None
        if ino is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(ino.fileno())  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            ino.close()  # type: ignore[attr-defined]
        self._dirs.clear()

    def _drain(self) -> None:
        assert flags is not None
        try:
            events = self._inotify.read(timeout=0)  # type: ignore[union-attr]
        except (OSError, BlockingIOError):
            return
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                log.warning("intake.inotify_overflow")
                self._on_overflow()
            elif event.mask & flags.MOVED_TO and event.wd in self._dirs and event.name:
                self._on_renamed(self._dirs[event.wd], event.name)
        if events:
            self._on_change()
