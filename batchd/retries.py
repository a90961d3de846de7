"""How often intake tries again to claim or process a file that failed, and when it gives up.

A file whose claim or validation raises (a bug, a name the database refuses, a disk error) is
tried again after 2 s, 4 s, 8 s, ... and after ``MAX_TRIES`` failures it is given up: moved to
``rejected/`` with a reason. So one such file costs a handful of log lines, never one traceback
per scan, and never blocks the inbox. Pure bookkeeping: the caller says what failed and when.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

MAX_TRIES: Final = 5
RETRY_BASE_S: Final = 2.0
RETRY_MAX_S: Final = 60.0


@dataclass(slots=True)
class _Attempts:
    count: int
    next_at: float


def retry_delay_s(failures: int) -> float:
    """The wait after the ``failures``-th failure in a row: 2, 4, 8, ... capped at a minute."""
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, failures - 1)))


class RetryBook:
    """Failures in a row per key (a file or a submission), forgotten on success."""

    def __init__(self, max_tries: int = MAX_TRIES) -> None:
        self.max_tries = max_tries
        self._attempts: dict[Hashable, _Attempts] = {}

    def due(self, key: Hashable, now: float) -> bool:
        """False while ``key`` waits for its next try."""
        attempts = self._attempts.get(key)
        return attempts is None or now >= attempts.next_at

    def failed(self, key: Hashable, now: float) -> int:
        """Record one failure; returns how many in a row (``>= max_tries``: give up)."""
        attempts = self._attempts.setdefault(key, _Attempts(0, now))
        attempts.count += 1
        attempts.next_at = now + retry_delay_s(attempts.count)
        return attempts.count

    def next_at(self, key: Hashable) -> float | None:
        attempts = self._attempts.get(key)
        return None if attempts is None else attempts.next_at

    def forget(self, key: Hashable) -> None:
        self._attempts.pop(key, None)

    def forget_if(self, predicate: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self._attempts if predicate(k)]:
            del self._attempts[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._attempts
