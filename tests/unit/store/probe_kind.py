"""A store kind registered by a test: it must be imported only when its scheme is used."""

from __future__ import annotations

from pathlib import Path

from batchd.store.base import JobStore
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import StoreOptions

MADE: list[tuple[str, StoreOptions]] = []


class ProbeKind:
    def anchored(self, url: str, data_dir: Path) -> str:
        return url

    def problem(self, url: str) -> str | None:
        return None if url.endswith("://ok") else "only probe://ok"

    def describe(self, url: str) -> str:
        return "the probe"

    def exists(self, url: str) -> bool:
        return True

    def make(self, url: str, options: StoreOptions) -> JobStore:
        MADE.append((url, options))
        return MemoryJobStore()


KIND = ProbeKind()
