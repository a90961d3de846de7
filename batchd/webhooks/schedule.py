"""When to try a webhook delivery again, and what an attempt's result means (pure).

The ladder is the Standard Webhooks example: attempts at 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h and 24 h after the previous one (10 attempts, 75 h 35 min nominal), each delay with
+/-20 % jitter. Two floors keep the promise of "at least 10 attempts over at least 72 hours":

* ``Retry-After`` (capped at one hour) can only lengthen a delay, never shorten it: a receiver
  answering ``Retry-After: 1`` cannot burn through the ten attempts in a minute.
* The last attempt is never scheduled earlier than 72 h after the first, whatever the jitter.

An endpoint may have a shorter ladder (``retry_delays_s`` and ``min_retry_span_s`` of a
``[[webhooks]]`` entry, for a test environment): a ``RetryLadder``; the default is the one above.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

from batchd.errors import WebhookError

# Delay before attempt n + 1, indexed by n - 1 (n = attempts made so far).
LADDER_S: Final[tuple[float, ...]] = (
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * 3600.0,
    5 * 3600.0,
    10 * 3600.0,
    14 * 3600.0,
    20 * 3600.0,
    24 * 3600.0,
)
MAX_ATTEMPTS: Final = len(LADDER_S) + 1
MIN_SPAN_S: Final = 72 * 3600.0
JITTER: Final = 0.2
RETRY_AFTER_CAP_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class RetryLadder:
    """The delays between attempts, and the shortest time from the first to the last."""

    delays_s: tuple[float, ...] = LADDER_S
    min_span_s: float = MIN_SPAN_S

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1


STANDARD: Final = RetryLadder()


class AttemptOutcome(enum.StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # 3xx (never followed), 429, 5xx, other 4xx, timeouts, connection errors
    DISABLE = "disable"  # 410 Gone: the receiver asks us to stop
    FAIL = "fail"  # we refused to send (unsafe URL, unusable secret): retrying cannot help


def classify(status: int | None, error: BaseException | None) -> AttemptOutcome:
    """The meaning of one attempt: the HTTP status when there was one, else the error."""
    if status is None:
        return AttemptOutcome.FAIL if isinstance(error, WebhookError) else AttemptOutcome.RETRY
    if 200 <= status < 300:
        return AttemptOutcome.DELIVERED
    if status == 410:
        return AttemptOutcome.DISABLE
    return AttemptOutcome.RETRY


def next_delay(
    attempt: int,
    retry_after_s: float | None,
    rng: random.Random,
    *,
    elapsed_s: float,
    ladder: RetryLadder = STANDARD,
) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), or None to give up.

    ``elapsed_s`` is the time from the first attempt to this one (it sets the last floor)."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt >= ladder.max_attempts:
        return None
    delay = ladder.delays_s[attempt - 1] * rng.uniform(1.0 - JITTER, 1.0 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(max(retry_after_s, 0.0), RETRY_AFTER_CAP_S))
    if attempt == ladder.max_attempts - 1:
        delay = max(delay, ladder.min_span_s - elapsed_s)
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable. Never negative."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def nominal_offsets_s(ladder: RetryLadder = STANDARD) -> list[float]:
    """Time of each attempt since the first, without jitter: 0, 5, 305, ... 272 105 s."""
    offsets = [0.0]
    for delay in ladder.delays_s:
        offsets.append(offsets[-1] + delay)
    return offsets
