"""The notifier's decisions, as pure functions: who gets an event, and what an attempt's result
does to its delivery (delivered, retried later, dead letter, endpoint disabled)."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from batchd.models import Event
from batchd.store.base import Delivery, DeliveryState, EventSpec
from batchd.webhooks.delivery import AttemptResult
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.schedule import STANDARD, AttemptOutcome, RetryLadder, next_delay

DEAD_LETTER = "webhook.dead_letter"
ENDPOINT_DISABLED = "webhook.endpoint_disabled"
DISABLED_REASON = "the receiver answered 410 Gone"


@dataclass(frozen=True, slots=True)
class Decision:
    state: str  # a DeliveryState
    next_attempt_at: float | None = None
    event: EventSpec | None = None  # appended with the attempt, in the same transaction
    disable_reason: str | None = None  # set: disable the endpoint after recording


def targets_for(
    event: Event, endpoints: Iterable[WebhookEndpoint], disabled: Collection[str]
) -> list[str]:
    """Names of the endpoints that get ``event``: those whose filter wants its type, minus the
    disabled ones. An event about an endpoint (its dead letters, its disabling) never goes to
    that endpoint itself, so a dead receiver cannot feed itself an endless chain of them."""
    about = event.data.get("endpoint") if event.type.startswith("webhook.") else None
    return [
        e.name
        for e in endpoints
        if e.wants(event.type) and e.name not in disabled and e.name != about
    ]


def decide(
    delivery: Delivery,
    result: AttemptResult,
    *,
    now: float,
    rng: random.Random,
    ladder: RetryLadder = STANDARD,
) -> Decision:
    """What attempt number ``delivery.attempts + 1``, which ended with ``result``, leads to."""
    if result.outcome is AttemptOutcome.DELIVERED:
        return Decision(DeliveryState.DELIVERED)
    if result.outcome is AttemptOutcome.DISABLE:
        data = {
            "endpoint": delivery.endpoint,
            "event_id": delivery.event_id,
            "reason": DISABLED_REASON,
        }
        return Decision(
            DeliveryState.DROPPED,
            event=EventSpec(ENDPOINT_DISABLED, data),
            disable_reason=DISABLED_REASON,
        )
    if result.outcome is AttemptOutcome.RETRY:
        first = delivery.first_attempt_at if delivery.first_attempt_at is not None else now
        delay = next_delay(
            delivery.attempts + 1, result.retry_after_s, rng, elapsed_s=now - first, ladder=ladder
        )
        if delay is not None:
            return Decision(DeliveryState.PENDING, next_attempt_at=now + delay)
    return Decision(DeliveryState.DEAD, event=dead_letter(delivery, result))


def dead_letter(delivery: Delivery, result: AttemptResult) -> EventSpec:
    return EventSpec(
        DEAD_LETTER,
        {
            "endpoint": delivery.endpoint,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "attempts": delivery.attempts + 1,
            "last_status": result.status,
            "last_error": result.error,
        },
    )
