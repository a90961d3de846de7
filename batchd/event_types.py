"""Every event type batchd records in its outbox (and may send to webhooks).

A ``[[webhooks]]`` entry's ``events`` globs are checked against this list at load: a pattern
that matches none of them (a typo such as ``results.redy``) is a configuration error. A test
keeps the list in step with the code that emits events.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Final

EVENT_TYPES: Final = frozenset(
    {
        "submission.accepted",
        "submission.rejected",
        "submission.abandoned",
        "submission.cancel_requested",
        "batch.created",
        "batch.running",
        "batch.cancelling",
        "batch.succeeded",
        "batch.failed",
        "batch.expired",
        "batch.cancelled",
        "batch.lost",
        "batch.unknown_status",
        "batch.duplicate_cancelled",
        "results.ready",
        "results.unavailable",
        "provider.auth_failed",
        "webhook.dead_letter",
        "webhook.endpoint_disabled",
        "webhook.test",
    }
)


def matches_any(pattern: str, types: Iterable[str] = EVENT_TYPES) -> bool:
    return any(fnmatch.fnmatchcase(t, pattern) for t in types)


# Names people reach for that batchd does not use, and the event they mean (a spelling
# suggestion would offer "submission.abandoned" for "submission.done").
MEANT: Final = {
    "submission.done": "results.ready",
    "submission.finished": "results.ready",
    "submission.completed": "results.ready",
    "submission.succeeded": "results.ready",
    "batch.completed": "batch.succeeded",
    "batch.done": "batch.succeeded",
}


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is useless (it matches no event type), with a suggestion; None if fine."""
    if matches_any(pattern):
        return None
    close = difflib.get_close_matches(pattern, sorted(EVENT_TYPES), n=1, cutoff=0.6)
    meant = MEANT.get(pattern)
    hint = f"; did you mean {meant or close[0]!r}?" if meant or close else ""
    return f"{pattern!r} matches no event type{hint} (known: {', '.join(sorted(EVENT_TYPES))})"
