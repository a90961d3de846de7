from __future__ import annotations

import random

import pytest

from batchd.models import (
    ACTIVE,
    ANSWERED,
    LOCAL,
    PROVIDER_STATES,
    TERMINAL,
    JobState,
    Outcome,
    ResultCounts,
    backoff_s,
    can_transition,
    cancel_too_late,
    event_type_for,
    new_id,
    outcome_for,
)


def test_state_sets_partition_every_state() -> None:
    assert LOCAL | ACTIVE | TERMINAL == set(JobState)
    assert not (LOCAL & ACTIVE) and not (ACTIVE & TERMINAL) and not (LOCAL & TERMINAL)
    assert JobState.LOST not in PROVIDER_STATES
    assert JobState.UNKNOWN in ACTIVE


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_are_final(terminal: JobState) -> None:
    assert not any(can_transition(terminal, other) for other in JobState)


def test_local_states_never_skip_reconciliation() -> None:
    # A job that may have been created must pass through CREATING (reconcile) first.
    assert not can_transition(JobState.NEW, JobState.PENDING)
    assert not can_transition(JobState.UPLOADED, JobState.RUNNING)
    assert can_transition(JobState.CREATING, JobState.SUCCEEDED)  # adopted, already finished
    assert can_transition(JobState.RUNNING, JobState.LOST)
    assert not can_transition(JobState.RUNNING, JobState.RUNNING)


def test_every_provider_state_has_an_event() -> None:
    assert all(event_type_for(s) for s in PROVIDER_STATES | {JobState.LOST})
    assert event_type_for(JobState.NEW) is None


def test_ids_are_unique_sortable_and_dot_free() -> None:
    ids = [new_id("evt", now=1000.0 + i) for i in range(50)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 50
    assert all("." not in i and i.startswith("evt_") for i in ids)


def test_backoff_grows_to_a_cap_with_bounded_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_s(a, base_s=5, cap_s=300, rng=rng) for a in range(12)]
    assert 4 <= delays[0] <= 6
    assert all(d <= 360 for d in delays)
    assert delays[-1] >= 240
    assert backoff_s(10_000, base_s=1, cap_s=60, jitter=0) == 60


def test_outcome_rules() -> None:
    """The outcome comes from the results: answered / answered with errors / unanswered."""
    assert outcome_for(ResultCounts(5, 0, 0), cancel_requested=False) is Outcome.SUCCEEDED
    errors = ResultCounts(4990, 10, 0)
    assert outcome_for(errors, cancel_requested=False) is Outcome.COMPLETED_WITH_ERRORS
    all_errors = ResultCounts(0, 5, 0)  # answered, each with an error (a bad model name...)
    assert outcome_for(all_errors, cancel_requested=False) is Outcome.COMPLETED_WITH_ERRORS
    assert outcome_for(ResultCounts(3, 0, 2), cancel_requested=False) is Outcome.PARTIAL
    assert outcome_for(ResultCounts(0, 1, 2), cancel_requested=False) is Outcome.PARTIAL
    assert outcome_for(ResultCounts(0, 0, 3), cancel_requested=False) is Outcome.FAILED
    assert outcome_for(ResultCounts(3, 0, 2), cancel_requested=True) is Outcome.CANCELLED
    assert outcome_for(ResultCounts(0, 0, 5), cancel_requested=True) is Outcome.CANCELLED


def test_a_cancel_after_every_request_was_answered_came_too_late() -> None:
    late = ResultCounts(4990, 10, 0)
    assert outcome_for(late, cancel_requested=True) is Outcome.COMPLETED_WITH_ERRORS
    assert cancel_too_late(late, cancel_requested=True)
    assert not cancel_too_late(ResultCounts(3, 0, 1), cancel_requested=True)
    assert not cancel_too_late(late, cancel_requested=False)
    assert {Outcome.SUCCEEDED, Outcome.COMPLETED_WITH_ERRORS} == ANSWERED
