"""The ``memory`` store kind: ``memory://`` is a ``MemoryJobStore`` in this process only.

For tests and trials: nothing survives the process, and another process (``batchd jobs``,
``batchd status``) never sees it, so for them it does not exist.
"""

from __future__ import annotations

from pathlib import Path

from batchd.store.base import JobStore
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import StoreOptions


class MemoryKind:
    def anchored(self, url: str, data_dir: Path) -> str:
        return url

    def problem(self, url: str) -> str | None:
        if url.split("://", 1)[1]:
            return "a memory store is just memory:// (it takes no path or options)"
        return None

    def describe(self, url: str) -> str:
        return "memory:// (this process only)"

    def exists(self, url: str) -> bool:
        return False

    def make(self, url: str, options: StoreOptions) -> JobStore:
        return MemoryJobStore()


KIND = MemoryKind()
