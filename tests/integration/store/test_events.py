"""Behaviour suite, outbox part 1: events, webhook bodies, fan-out (every store)."""

from __future__ import annotations

from typing import Any

import pytest

from batchd.errors import StoreError
from batchd.models import Event
from batchd.store.base import Delivery, EventSpec, JobStore

from .conftest import NOW, PENDING, accepted, append, body, snapshot


async def test_append_event_returns_the_stored_event(store: JobStore) -> None:
    event = await store.append_event(EventSpec("provider.auth_failed", {"p": "mistral"}), now=NOW)

    assert event == Event(
        id=event.id, type="provider.auth_failed", created_at=NOW, data={"p": "mistral"}
    )
    assert event.id.startswith("evt_")
    assert await store.get_event(event.id) == event
    assert await store.unfanned_events() == [event]
    assert await store.get_event("evt_missing") is None


async def test_append_event_links_submission_and_job(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    event = await store.append_event(EventSpec("t.x"), now=NOW, submission_id=sub.id, job_id=job.id)
    assert (event.submission_id, event.job_id) == (sub.id, job.id)
    assert await store.get_event(event.id) == event


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": EventSpec("t.x"), "submission_id": "sub_missing"},
        {"event": EventSpec("t.x"), "job_id": "job_missing"},
        {"event": EventSpec("t.x", {"bad": {1, 2}})},
        {"event": EventSpec("t.x", {"nan": float("nan")})},
        {"event": EventSpec("")},
    ],
)
async def test_append_event_refused_appends_nothing(
    store: JobStore, kwargs: dict[str, Any]
) -> None:
    await accepted(store, 1)
    before = await snapshot(store)
    with pytest.raises(StoreError):
        await store.append_event(now=NOW, **kwargs)
    assert await snapshot(store) == before


async def test_payload_is_the_exact_canonical_body_computed_once(store: JobStore) -> None:
    data = {"z": 1, "a": "é ✓", "nested": {"b": [1, 2.5, None], "a": True}}
    event = await store.append_event(EventSpec("batch.succeeded", data), now=NOW + 0.75)
    await store.fan_out(event.id, ["hook"], now=NOW + 100)

    [delivery] = await store.deliveries_for(event.id)
    assert delivery.payload == body("batch.succeeded", NOW + 0.75, data)
    assert delivery.payload.startswith(b'{"data":{"a":"\xc3\xa9 \xe2\x9c\x93","nested":{"a":true')
    assert delivery.event_type == "batch.succeeded"


async def test_events_keep_append_order(store: JobStore) -> None:
    events = await append(store, 5)
    late_but_early_clock = await store.append_event(EventSpec("t.late"), now=NOW - 100)
    assert await store.unfanned_events() == [*events, late_but_early_clock]
    assert await store.unfanned_events(limit=2) == events[:2]
    assert await store.list_events() == [*events, late_but_early_clock]


async def test_fan_out_creates_one_pending_delivery_per_endpoint(store: JobStore) -> None:
    [event, other] = await append(store, 2)
    await store.fan_out(event.id, ["b", "a", "b"], now=NOW + 10)

    expected = [
        Delivery(event.id, name, "t.note", body("t.note", NOW, {"i": 0}), PENDING, 0, NOW + 10)
        for name in ["a", "b"]
    ]
    assert await store.deliveries_for(event.id) == expected
    assert await store.unfanned_events() == [other]
    assert [h.name for h in await store.endpoint_health()] == ["a", "b"]


async def test_fan_out_is_idempotent(store: JobStore) -> None:
    [event] = await append(store)
    await store.fan_out(event.id, ["a", "b"], now=NOW + 10)
    await store.record_delivery(
        event.id,
        "a",
        now=NOW + 11,
        state=PENDING,
        status=500,
        error="boom",
        next_attempt_at=NOW + 20,
    )
    before = await snapshot(store)

    await store.fan_out(event.id, ["a", "b"], now=NOW + 30)
    assert await snapshot(store) == before

    await store.fan_out(event.id, ["a", "b", "c"], now=NOW + 40)  # a new endpoint joins
    assert [
        (d.endpoint, d.attempts, d.next_attempt_at) for d in await store.deliveries_for(event.id)
    ] == [
        ("a", 1, NOW + 20),
        ("b", 0, NOW + 10),
        ("c", 0, NOW + 40),
    ]


async def test_fan_out_to_no_endpoint_marks_the_event_handled(store: JobStore) -> None:
    [event] = await append(store)
    await store.fan_out(event.id, [], now=NOW)
    assert await store.unfanned_events() == []
    assert await store.deliveries_for(event.id) == []
    assert await store.list_events(undelivered=True) == []


async def test_fan_out_of_an_unknown_event_fails(store: JobStore) -> None:
    before = await snapshot(store)
    with pytest.raises(StoreError):
        await store.fan_out("evt_missing", ["a"], now=NOW)
    assert await snapshot(store) == before
