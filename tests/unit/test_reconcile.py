"""The reconcile window's decisions (issue 12), as pure functions."""

from __future__ import annotations

import pytest

from batchd.errors import (
    AuthError,
    NotFound,
    ProviderError,
    ProviderPermanent,
    ProviderTransient,
    RateLimited,
)
from batchd.models import Job, JobState
from batchd.reconcile import (
    ReconcileWindow,
    create_deadline,
    first_lookup_at,
    had_no_effect,
    input_file_gone,
    next_lookup_at,
    window_end,
)

WINDOW = ReconcileWindow(create_timeout_s=60, grace_s=120, first_lookup_s=5, max_lookup_gap_s=60)


def creating(**fields: object) -> Job:
    return Job("job_1", "sub_1", 0, "p", JobState.CREATING, 0, 1, 10, **fields)  # type: ignore[arg-type]


def test_the_window_is_the_create_timeout_plus_the_provider_grace() -> None:
    assert WINDOW.length_s == 180
    assert create_deadline(1000.0, WINDOW, None) == 1180.0


def test_a_new_create_never_shortens_a_committed_window() -> None:
    short = ReconcileWindow(create_timeout_s=5, grace_s=0)
    assert create_deadline(1000.0, short, previous=1180.0) == 1180.0
    assert create_deadline(1200.0, short, previous=1180.0) == 1205.0


def test_lookups_back_off_and_the_last_one_is_at_the_window_end() -> None:
    now, end, times = 1000.0, 1180.0, []
    lookups = 0
    while (nxt := next_lookup_at(now, lookups, end, WINDOW)) is not None:
        times.append(nxt)
        now, lookups = nxt, lookups + 1
    assert times == [1005.0, 1015.0, 1035.0, 1075.0, 1135.0, 1180.0]
    assert next_lookup_at(1180.0, 6, end, WINDOW) is None  # passed: create again


def test_a_zero_first_lookup_delay_does_not_spin() -> None:
    fast = ReconcileWindow(create_timeout_s=1, grace_s=1, first_lookup_s=0, max_lookup_gap_s=0)
    assert next_lookup_at(0.0, 0, 2.0, fast) == pytest.approx(0.1)
    assert first_lookup_at(0.0, 2.0, fast) == pytest.approx(0.1)


def test_the_first_lookup_never_goes_past_the_window_end() -> None:
    assert first_lookup_at(1000.0, 1180.0, WINDOW) == 1005.0
    assert first_lookup_at(1178.0, 1180.0, WINDOW) == 1180.0


def test_a_job_without_a_committed_window_gets_a_whole_one_from_its_last_change() -> None:
    assert window_end(creating(updated_at=500.0), WINDOW) == 680.0
    assert window_end(creating(updated_at=500.0, reconcile_until=900.0), WINDOW) == 900.0


@pytest.mark.parametrize(
    ("error", "no_effect"),
    [
        (RateLimited("HTTP 429", retry_after_s=1), True),
        (ProviderPermanent("HTTP 400", status=400), True),
        (AuthError("HTTP 401", status=401), True),
        (AuthError("HTTP 403", status=403), True),
        (NotFound("HTTP 404", status=404), True),
        (ProviderPermanent("HTTP 422", status=422), True),
        (RateLimited("HTTP 503", retry_after_s=5, status=503), False),  # a gateway said it
        (ProviderTransient("HTTP 500", status=500), False),
        (ProviderTransient("HTTP 504", status=504), False),
        (ProviderTransient("timed out (TimeoutError)"), False),
        (ProviderTransient("connection failed (ServerDisconnectedError)"), False),
    ],
)
def test_only_refusals_that_certainly_created_nothing_are_not_ambiguous(
    error: ProviderError, no_effect: bool
) -> None:
    assert had_no_effect(error) is no_effect


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (NotFound("HTTP 404: Not Found", status=404), True),
        (ProviderPermanent("HTTP 400: File f-123 not found", status=400), True),
        (
            ProviderPermanent(
                "HTTP 422: invalid", status=422, body='{"detail":"File F-123 does not exist"}'
            ),
            True,
        ),
        (ProviderPermanent("HTTP 422: File f-123 has invalid lines", status=422), False),
        (ProviderPermanent("HTTP 400: model not found", status=400), False),  # not the file
        (ProviderPermanent("HTTP 409: File f-123 not found", status=409), False),
    ],
)
def test_a_create_refused_for_a_missing_input_file_is_recognised(
    error: ProviderError, gone: bool
) -> None:
    assert input_file_gone(error, "f-123") is gone
