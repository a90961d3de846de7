"""Behaviour suite, outbox part 2: deliveries, replay, endpoint health (every store)."""

from __future__ import annotations

import pytest

from batchd.errors import StoreError
from batchd.models import JobState
from batchd.store.base import Delivery, EndpointHealth, EventSpec, JobStore

from .conftest import DEAD, DELIVERED, DROPPED, NOW, PENDING, accepted, append, snapshot


async def test_due_deliveries_pending_and_due_oldest_event_first(store: JobStore) -> None:
    first, second, third = await append(store, 3)
    for event in (third, first, second):
        await store.fan_out(event.id, ["b", "a"], now=NOW + 10)
    await store.record_delivery(
        first.id, "a", now=NOW + 11, state=DELIVERED, status=200, error=None, next_attempt_at=None
    )
    await store.record_delivery(
        second.id,
        "b",
        now=NOW + 11,
        state=PENDING,
        status=503,
        error="busy",
        next_attempt_at=NOW + 99,
    )

    def keys(found: list[Delivery]) -> list[tuple[str, str]]:
        return [(d.event_id, d.endpoint) for d in found]

    due = await store.due_deliveries(now=NOW + 10)
    assert keys(due) == [(first.id, "b"), (second.id, "a"), (third.id, "a"), (third.id, "b")]
    assert await store.due_deliveries(now=NOW + 9) == []
    assert keys(await store.due_deliveries(now=NOW + 10, limit=2)) == keys(due)[:2]
    assert keys(await store.due_deliveries(now=NOW + 10, endpoints=["a"])) == [
        (second.id, "a"),
        (third.id, "a"),
    ]
    assert await store.due_deliveries(now=NOW + 10, endpoints=[]) == []
    assert (second.id, "b") in keys(await store.due_deliveries(now=NOW + 99))


async def test_record_delivery_counts_attempts_and_endpoint_health(store: JobStore) -> None:
    [event] = await append(store)
    await store.fan_out(event.id, ["hook"], now=NOW)

    failed = await store.record_delivery(
        event.id,
        "hook",
        now=NOW + 1,
        state=PENDING,
        status=500,
        error="http 500",
        next_attempt_at=NOW + 6,
    )
    assert (failed.attempts, failed.first_attempt_at, failed.last_status, failed.last_error) == (
        1,
        NOW + 1,
        500,
        "http 500",
    )
    assert (failed.next_attempt_at, failed.delivered_at, failed.state) == (NOW + 6, None, PENDING)
    await store.record_delivery(
        event.id,
        "hook",
        now=NOW + 6,
        state=PENDING,
        status=None,
        error="timeout",
        next_attempt_at=NOW + 300,
    )
    assert await store.endpoint_health() == [
        EndpointHealth("hook", last_failure_at=NOW + 6, consecutive_failures=2, pending=1)
    ]

    done = await store.record_delivery(
        event.id,
        "hook",
        now=NOW + 300,
        state=DELIVERED,
        status=204,
        error=None,
        next_attempt_at=None,
    )
    assert done == Delivery(
        event.id,
        "hook",
        "t.note",
        failed.payload,
        DELIVERED,
        attempts=3,
        next_attempt_at=NOW + 300,
        first_attempt_at=NOW + 1,
        last_status=204,
        last_error=None,
        delivered_at=NOW + 300,
    )
    assert await store.deliveries_for(event.id) == [done]
    assert await store.endpoint_health() == [
        EndpointHealth("hook", last_success_at=NOW + 300, last_failure_at=NOW + 6)
    ]


async def test_dead_letter_event_is_written_with_the_attempt(store: JobStore) -> None:
    sub, [job] = await accepted(store, 1)
    await store.transition_job(job.id, JobState.NEW, JobState.CREATING, now=NOW)
    moved = await store.transition_job(
        job.id, JobState.CREATING, JobState.PENDING, now=NOW, event=EventSpec("batch.created")
    )
    created = (await store.list_events())[-1]
    await store.fan_out(created.id, ["hook"], now=NOW)

    await store.record_delivery(
        created.id,
        "hook",
        now=NOW + 9,
        state=DEAD,
        status=500,
        error="gave up",
        next_attempt_at=None,
        event=EventSpec("webhook.dead_letter", {"event_id": created.id, "endpoint": "hook"}),
    )

    dead = (await store.list_events())[-1]
    assert (dead.type, dead.data, dead.submission_id, dead.job_id) == (
        "webhook.dead_letter",
        {"event_id": created.id, "endpoint": "hook"},
        sub.id,
        moved.id,
    )
    assert [(d.state, d.attempts) for d in await store.deliveries_for(created.id)] == [(DEAD, 1)]


async def test_record_delivery_refused_changes_nothing(store: JobStore) -> None:
    [event] = await append(store)
    await store.fan_out(event.id, ["hook"], now=NOW)
    before = await snapshot(store)
    with pytest.raises(StoreError):
        await store.record_delivery(
            event.id, "hook", now=NOW, state="lost", status=None, error=None, next_attempt_at=None
        )
    with pytest.raises(StoreError):
        await store.record_delivery(
            event.id,
            "other",
            now=NOW,
            state=DELIVERED,
            status=200,
            error=None,
            next_attempt_at=None,
        )
    with pytest.raises(StoreError):
        await store.record_delivery(
            event.id,
            "hook",
            now=NOW,
            state=DEAD,
            status=500,
            error=None,
            next_attempt_at=None,
            event=EventSpec("webhook.dead_letter", {"x": object()}),
        )
    assert await snapshot(store) == before


async def test_list_events_since_and_undelivered(store: JobStore) -> None:
    unfanned, pending, dead, delivered, dropped, nowhere = await append(store, 6)
    for event in (pending, dead, delivered, dropped):
        await store.fan_out(event.id, ["hook", "gone"], now=NOW)
    await store.fan_out(nowhere.id, [], now=NOW)
    for event, state in ((dead, DEAD), (delivered, DELIVERED), (dropped, DELIVERED)):
        await store.record_delivery(
            event.id, "hook", now=NOW, state=state, status=200, error=None, next_attempt_at=None
        )
    for event in (dead, delivered):
        await store.record_delivery(
            event.id, "gone", now=NOW, state=DELIVERED, status=200, error=None, next_attempt_at=None
        )
    await store.disable_endpoint("gone", "http 410", now=NOW)  # drops `dropped` to "gone"

    undelivered = await store.list_events(undelivered=True)
    assert [e.id for e in undelivered] == [unfanned.id, pending.id, dead.id]
    assert [e.id for e in await store.list_events(since=NOW + 2)] == [
        dead.id,
        delivered.id,
        dropped.id,
        nowhere.id,
    ]
    assert [e.id for e in await store.list_events(since=NOW + 1, undelivered=True, limit=1)] == [
        pending.id
    ]


async def test_list_events_newest_first_pages_with_an_after_cursor(store: JobStore) -> None:
    one, two, three = await append(store, 3)
    newest = await store.list_events(newest_first=True)
    assert [e.id for e in newest] == [three.id, two.id, one.id]
    assert [e.id for e in await store.list_events(newest_first=True, after=three.id)] == [
        two.id,
        one.id,
    ]
    assert [e.id for e in await store.list_events(after=one.id, limit=1)] == [two.id]
    assert [e.id for e in await store.list_events(newest_first=True, since=NOW + 1)] == [
        three.id,
        two.id,
    ]
    assert await store.list_events(after="evt_unknown") == []


async def test_replay_makes_events_deliverable_again(store: JobStore) -> None:
    first, second, third = await append(store, 3)
    for event in (first, second, third):
        await store.fan_out(event.id, ["a", "b"], now=NOW)
        await store.record_delivery(
            event.id,
            "a",
            now=NOW + 1,
            state=DELIVERED,
            status=200,
            error=None,
            next_attempt_at=None,
        )
        await store.record_delivery(
            event.id, "b", now=NOW + 1, state=DEAD, status=500, error="x", next_attempt_at=None
        )

    assert await store.replay(event_ids=[first.id, "evt_missing"], since=NOW + 2, now=NOW + 50) == 2
    assert await store.unfanned_events() == [first, third]
    assert await store.deliveries_for(first.id) == []
    assert len(await store.deliveries_for(second.id)) == 2

    await store.fan_out(first.id, ["a", "c"], now=NOW + 60)
    assert [
        (d.event_id, d.endpoint, d.state, d.attempts, d.first_attempt_at)
        for d in await store.deliveries_for(first.id)
    ] == [
        (first.id, "a", PENDING, 0, None),
        (first.id, "c", PENDING, 0, None),
    ]
    assert await store.replay(event_ids=[first.id], now=NOW + 70) == 1
    assert await store.replay(event_ids=[first.id], now=NOW + 70) == 1
    assert await store.deliveries_for(first.id) == []
    assert await store.replay(now=NOW) == 0


async def test_disable_endpoint_drops_pending_and_stops_fan_out(store: JobStore) -> None:
    sent, waiting, later = await append(store, 3)
    for event in (sent, waiting):
        await store.fan_out(event.id, ["bad", "good"], now=NOW)
    await store.record_delivery(
        sent.id, "bad", now=NOW + 1, state=DELIVERED, status=200, error=None, next_attempt_at=None
    )

    await store.disable_endpoint("bad", "http 410", now=NOW + 2)
    await store.disable_endpoint("bad", "again", now=NOW + 3)  # keeps the first reason and time
    await store.fan_out(later.id, ["bad", "good"], now=NOW + 4)

    assert [(d.endpoint, d.state) for d in await store.deliveries_for(sent.id)] == [
        ("bad", DELIVERED),
        ("good", PENDING),
    ]
    assert [(d.endpoint, d.state) for d in await store.deliveries_for(waiting.id)] == [
        ("bad", DROPPED),
        ("good", PENDING),
    ]
    assert [d.endpoint for d in await store.deliveries_for(later.id)] == ["good"]
    assert [d.endpoint for d in await store.due_deliveries(now=NOW + 10)] == ["good"] * 3
    assert await store.endpoint_health() == [
        EndpointHealth(
            "bad", disabled_at=NOW + 2, disabled_reason="http 410", last_success_at=NOW + 1
        ),
        EndpointHealth("good", pending=3),
    ]


async def test_enable_endpoint_then_replay_reaches_it_again(store: JobStore) -> None:
    [event] = await append(store)
    await store.fan_out(event.id, ["hook"], now=NOW)
    await store.record_delivery(
        event.id, "hook", now=NOW, state=PENDING, status=500, error="x", next_attempt_at=NOW + 5
    )
    await store.disable_endpoint("hook", "http 410", now=NOW + 1)
    await store.enable_endpoint("hook")
    await store.enable_endpoint("never-seen")  # unknown: nothing to do

    assert await store.endpoint_health() == [EndpointHealth("hook", last_failure_at=NOW)]
    await store.replay(event_ids=[event.id], now=NOW + 2)
    await store.fan_out(event.id, ["hook"], now=NOW + 3)
    assert [(d.state, d.attempts) for d in await store.deliveries_for(event.id)] == [(PENDING, 0)]


async def test_an_attempt_in_flight_when_its_delivery_was_dropped_does_not_revive_it(
    store: JobStore,
) -> None:
    failing, delivered = await append(store, 2)
    for event in (failing, delivered):
        await store.fan_out(event.id, ["bad"], now=NOW)
    await store.disable_endpoint("bad", "http 410", now=NOW + 1)  # by another attempt

    kept = await store.record_delivery(
        failing.id,
        "bad",
        now=NOW + 2,
        state=DEAD,
        status=503,
        error="503",
        next_attempt_at=None,
        event=EventSpec("webhook.dead"),
    )
    assert kept.state == DROPPED
    done = await store.record_delivery(
        delivered.id,
        "bad",
        now=NOW + 2,
        state=DELIVERED,
        status=200,
        error=None,
        next_attempt_at=None,
    )
    assert done.state == DELIVERED  # it did arrive: that is recorded
    assert [e.type for e in await store.list_events()].count("webhook.dead") == 0
    assert await store.due_deliveries(now=NOW + 10) == []


async def test_disable_an_endpoint_never_seen(store: JobStore) -> None:
    await store.disable_endpoint("new", "removed from the configuration", now=NOW)
    [event] = await append(store)
    await store.fan_out(event.id, ["new"], now=NOW)
    assert await store.deliveries_for(event.id) == []
    assert await store.endpoint_health() == [
        EndpointHealth("new", disabled_at=NOW, disabled_reason="removed from the configuration")
    ]


async def test_stats_count_unfanned_events_and_pending_deliveries(store: JobStore) -> None:
    events = await append(store, 4)
    await store.fan_out(events[0].id, ["a", "b"], now=NOW)
    await store.fan_out(events[1].id, ["a"], now=NOW)
    await store.record_delivery(
        events[1].id, "a", now=NOW, state=DELIVERED, status=200, error=None, next_attempt_at=None
    )
    stats = await store.stats()
    assert stats.undelivered_events == 2 + 2  # two unfanned events, two pending deliveries
