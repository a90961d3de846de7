from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from batchd.errors import WebhookError
from batchd.webhooks.schedule import (
    JITTER,
    LADDER_S,
    MAX_ATTEMPTS,
    MIN_SPAN_S,
    RETRY_AFTER_CAP_S,
    AttemptOutcome,
    classify,
    next_delay,
    nominal_offsets_s,
    parse_retry_after,
)

HOUR = 3600.0


class _Fixed(random.Random):
    """An rng whose ``uniform`` always returns one end of the range (worst-case jitter)."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self._end = end

    def uniform(self, a: float, b: float) -> float:
        return a if self._end == "low" else b


def run_schedule(rng: random.Random, retry_after_s: float | None = None) -> list[float]:
    """Attempt times since the first one, until the schedule gives up."""
    times = [0.0]
    attempt = 1
    while (delay := next_delay(attempt, retry_after_s, rng, elapsed_s=times[-1])) is not None:
        times.append(times[-1] + delay)
        attempt += 1
    return times


def test_the_nominal_ladder_is_the_standard_webhooks_example():
    assert nominal_offsets_s() == [0, 5, 305, 2105, 9305, 27305, 63305, 113705, 185705, 272105]
    assert MAX_ATTEMPTS == 10


@pytest.mark.parametrize("end", ["low", "high"])
def test_ten_attempts_over_at_least_72_hours_whatever_the_jitter(end):
    times = run_schedule(_Fixed(end))
    assert len(times) == 10
    assert times[-1] >= MIN_SPAN_S


@pytest.mark.parametrize("seed", range(50))
def test_random_schedules_keep_the_promise(seed):
    times = run_schedule(random.Random(seed))
    assert len(times) == 10
    assert 72 * HOUR <= times[-1] <= 75.6 * HOUR * (1 + JITTER)


@pytest.mark.parametrize("attempt", range(1, MAX_ATTEMPTS - 1))
def test_jitter_stays_within_20_percent(attempt):
    base = LADDER_S[attempt - 1]
    delays = [next_delay(attempt, None, random.Random(s), elapsed_s=0) for s in range(200)]
    assert all(d is not None and base * 0.8 <= d <= base * 1.2 for d in delays)
    assert len(set(delays)) > 100


def test_the_same_seed_gives_the_same_schedule():
    assert run_schedule(random.Random(7)) == run_schedule(random.Random(7))


def test_gives_up_after_the_tenth_attempt():
    assert next_delay(MAX_ATTEMPTS, None, random.Random(0), elapsed_s=80 * HOUR) is None
    assert next_delay(MAX_ATTEMPTS, 5.0, random.Random(0), elapsed_s=80 * HOUR) is None


def test_retry_after_lengthens_a_short_rung():
    delay = next_delay(1, 120.0, _Fixed("high"), elapsed_s=0)
    assert delay == 120.0


def test_retry_after_is_capped_at_one_hour():
    assert next_delay(1, 5 * HOUR, _Fixed("high"), elapsed_s=0) == RETRY_AFTER_CAP_S == HOUR


def test_retry_after_never_shortens_the_ladder():
    delay = next_delay(5, 1.0, _Fixed("low"), elapsed_s=0)
    assert delay == LADDER_S[4] * 0.8
    times = run_schedule(random.Random(3), retry_after_s=1.0)
    assert len(times) == 10
    assert times[-1] >= MIN_SPAN_S


def test_attempt_numbers_start_at_one():
    with pytest.raises(ValueError):
        next_delay(0, None, random.Random(0), elapsed_s=0)


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (200, None, AttemptOutcome.DELIVERED),
        (204, None, AttemptOutcome.DELIVERED),
        (299, None, AttemptOutcome.DELIVERED),
        (301, None, AttemptOutcome.RETRY),
        (302, None, AttemptOutcome.RETRY),
        (307, None, AttemptOutcome.RETRY),
        (400, None, AttemptOutcome.RETRY),
        (401, None, AttemptOutcome.RETRY),
        (404, None, AttemptOutcome.RETRY),
        (408, None, AttemptOutcome.RETRY),
        (410, None, AttemptOutcome.DISABLE),
        (429, None, AttemptOutcome.RETRY),
        (500, None, AttemptOutcome.RETRY),
        (502, None, AttemptOutcome.RETRY),
        (503, None, AttemptOutcome.RETRY),
        (504, None, AttemptOutcome.RETRY),
        (None, TimeoutError(), AttemptOutcome.RETRY),
        (None, ConnectionResetError(), AttemptOutcome.RETRY),
        (None, OSError("connection refused"), AttemptOutcome.RETRY),
        (None, WebhookError("unsafe url"), AttemptOutcome.FAIL),
    ],
)
def test_classify(status, error, outcome):
    assert classify(status, error) is outcome


def test_parse_retry_after():
    now = 1_700_000_000.0
    later = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True)
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    assert parse_retry_after(later, now) == pytest.approx(90.0)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
