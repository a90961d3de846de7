"""Auto-batching (pure): requests accumulate per route until one flush condition holds.

A route's pending batch is due when it holds ``max_requests`` requests or ``max_bytes`` bytes of
batch lines, when its oldest request has waited ``max_wait_s``, or (``held_limit``) when the
source holds as many unacknowledged messages as the broker will give it (the prefetch: waiting
for more would wait for ever). ``due(now, closing=True)`` flushes everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_requests: int = 10_000
    max_bytes: int = 100 * 1024 * 1024
    max_wait_s: float = 600.0
    held_limit: int = 10_000


@dataclass
class Pending(Generic[T]):
    route: str
    first_at: float
    items: list[tuple[str, bytes, T]] = field(default_factory=list)  # (custom_id, line, item)
    size: int = 0
    custom_ids: set[str] = field(default_factory=set)

    @property
    def lines(self) -> bytes:
        return b"".join(line for _, line, _ in self.items)


class Batcher(Generic[T]):
    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self._pending: dict[str, Pending[T]] = {}

    def __len__(self) -> int:
        return sum(len(p.items) for p in self._pending.values())

    def has(self, route: str, custom_id: str) -> bool:
        pending = self._pending.get(route)
        return pending is not None and custom_id in pending.custom_ids

    def add(self, route: str, custom_id: str, line: bytes, item: T, *, now: float) -> bool:
        """Add one request; False (nothing added) when its custom_id already waits in the
        route's batch (a file holds each custom_id once)."""
        pending = self._pending.setdefault(route, Pending(route, now))
        if custom_id in pending.custom_ids:
            return False
        pending.items.append((custom_id, line, item))
        pending.custom_ids.add(custom_id)
        pending.size += len(line)
        return True

    def due(self, now: float, *, held: int = 0, closing: bool = False) -> Iterator[Pending[T]]:
        """The batches to flush now (removed from the batcher), fullest first."""
        limits = self.limits
        full = held >= limits.held_limit
        for pending in sorted(self._pending.values(), key=lambda p: -len(p.items)):
            if (
                closing
                or full
                or len(pending.items) >= limits.max_requests
                or pending.size >= limits.max_bytes
                or now - pending.first_at >= limits.max_wait_s
            ):
                del self._pending[pending.route]
                full = False  # one flush frees the prefetch for more
                yield pending

    def full(self, route: str, size: int) -> Pending[T] | None:
        """The route's batch, removed, when a request of ``size`` bytes would take it over
        ``max_requests`` or ``max_bytes`` (flush it first); None otherwise."""
        pending = self._pending.get(route)
        if pending is None or not pending.items:
            return None
        if (
            len(pending.items) + 1 > self.limits.max_requests
            or pending.size + size > self.limits.max_bytes
        ):
            return self._pending.pop(route)
        return None

    def next_due_at(self) -> float | None:
        if not self._pending:
            return None
        return min(p.first_at for p in self._pending.values()) + self.limits.max_wait_s

    def clear(self) -> list[T]:
        """Forget everything (the connection was lost: the broker delivers it all again)."""
        items = [item for p in self._pending.values() for _, _, item in p.items]
        self._pending.clear()
        return items
