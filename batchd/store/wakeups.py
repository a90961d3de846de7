"""What a store that several instances share offers the daemon beyond ``JobStore``: wake-ups
(another instance committed work for this one's loops: a file accepted on another host is
submitted here at once) and keep-alive (the leases this instance holds stay held while it
runs, however long one step takes).

Optional: a store that offers it satisfies ``SharedStore`` (PostgreSQL: LISTEN/NOTIFY and a
periodic renewal); ``wiring.build_runtime`` subscribes each loop's ``wake`` to its topic and
starts the keep-alive for the instance's owner id. A wake-up only shortens a loop's wait: a lost
one delays the work until the loop's next timed pass, never loses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, Protocol, runtime_checkable

Topic = Literal["submit", "track", "collect", "notify"]
TOPICS: Final[tuple[Topic, ...]] = ("submit", "track", "collect", "notify")


@runtime_checkable
class SharedStore(Protocol):
    def on_wakeup(self, topic: Topic, wake: Callable[[], None]) -> None:
        """Call ``wake`` (on the event loop, soon) whenever work for ``topic`` was committed by
        any instance sharing the store."""
        ...

    def keep_alive(self, owner: str, lease_s: float) -> None:
        """While the store is open, extend every lease ``owner`` still holds to ``now +
        lease_s`` every ``lease_s / 3`` (a lease that ran out is never extended)."""
        ...
