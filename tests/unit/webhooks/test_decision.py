from __future__ import annotations

import random

from structlog.testing import capture_logs

from batchd.models import Event
from batchd.notifier import log_event
from batchd.secret import Secret
from batchd.store.base import Delivery, DeliveryState, EventSpec
from batchd.webhooks.decision import (
    DEAD_LETTER,
    ENDPOINT_DISABLED,
    Decision,
    decide,
    targets_for,
)
from batchd.webhooks.delivery import AttemptResult
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.schedule import MAX_ATTEMPTS, AttemptOutcome

NOW = 1_700_000_000.0


def endpoint(name: str, *events: str) -> WebhookEndpoint:
    return WebhookEndpoint(
        name, f"https://{name}.example.com/", (Secret("s" * 8),), events or ("*",)
    )


def delivery(attempts: int = 0, first: float | None = None) -> Delivery:
    return Delivery(
        "evt_1", "a", "batch.created", b"{}", DeliveryState.PENDING, attempts, NOW, first
    )


def result(outcome: AttemptOutcome, status: int | None = None, retry_after: float | None = None):
    return AttemptResult(outcome, status, None if status == 200 else "boom", retry_after, 0.1, 1)


def test_targets_follow_the_filters_and_skip_disabled_endpoints():
    endpoints = [endpoint("all"), endpoint("batches", "batch.*"), endpoint("subs", "submission.*")]
    event = Event("evt_1", "batch.created", NOW, {})
    assert targets_for(event, endpoints, disabled=set()) == ["all", "batches"]
    assert targets_for(event, endpoints, disabled={"all"}) == ["batches"]


def test_an_event_about_an_endpoint_is_not_sent_to_it():
    endpoints = [endpoint("a"), endpoint("b")]
    dead = Event("evt_2", DEAD_LETTER, NOW, {"endpoint": "a"})
    assert targets_for(dead, endpoints, disabled=set()) == ["b"]
    other = Event("evt_3", "batch.created", NOW, {"endpoint": "a"})
    assert targets_for(other, endpoints, disabled=set()) == ["a", "b"]


def test_delivered():
    got = decide(delivery(), result(AttemptOutcome.DELIVERED, 200), now=NOW, rng=random.Random(0))
    assert got == Decision(DeliveryState.DELIVERED)


def test_a_failure_is_retried_on_the_ladder():
    got = decide(delivery(), result(AttemptOutcome.RETRY, 500), now=NOW, rng=random.Random(0))
    assert got.state == DeliveryState.PENDING
    assert got.next_attempt_at is not None
    assert NOW + 4.0 <= got.next_attempt_at <= NOW + 6.0
    assert got.event is None


def test_retry_after_is_honoured():
    got = decide(
        delivery(attempts=1, first=NOW - 5),
        result(AttemptOutcome.RETRY, 429, retry_after=900.0),
        now=NOW,
        rng=random.Random(0),
    )
    assert got.next_attempt_at == NOW + 900.0


def test_the_last_failure_is_a_dead_letter():
    last = delivery(attempts=MAX_ATTEMPTS - 1, first=NOW - 80 * 3600)
    got = decide(last, result(AttemptOutcome.RETRY, 503), now=NOW, rng=random.Random(0))
    assert got.state == DeliveryState.DEAD
    assert got.event == EventSpec(
        DEAD_LETTER,
        {
            "endpoint": "a",
            "event_id": "evt_1",
            "event_type": "batch.created",
            "attempts": MAX_ATTEMPTS,
            "last_status": 503,
            "last_error": "boom",
        },
    )


def test_a_refused_send_is_a_dead_letter_at_once():
    got = decide(delivery(), result(AttemptOutcome.FAIL), now=NOW, rng=random.Random(0))
    assert got.state == DeliveryState.DEAD
    assert got.event is not None and got.event.type == DEAD_LETTER


def test_410_drops_the_delivery_and_disables_the_endpoint():
    got = decide(delivery(), result(AttemptOutcome.DISABLE, 410), now=NOW, rng=random.Random(0))
    assert got.state == DeliveryState.DROPPED
    assert got.disable_reason
    assert got.event is not None and got.event.type == ENDPOINT_DISABLED
    assert got.event.data["endpoint"] == "a"


def test_the_log_sink_names_the_line_after_the_event_type():
    event = Event(
        "evt_9",
        "batch.succeeded",
        NOW,
        {"job_id": "job_1", "event": "x", "counts": {"total": 3}},
        submission_id="sub_1",
        job_id="job_1",
    )
    with capture_logs() as logs:
        log_event(event)
    assert logs == [
        {
            "event": "batch.succeeded",
            "log_level": "info",
            "event_id": "evt_9",
            "submission_id": "sub_1",
            "job_id": "job_1",
            "data_event": "x",
            "counts": {"total": 3},
        }
    ]
