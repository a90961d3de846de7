"""The notifier over the memory store and real receivers on 127.0.0.1, driven pass by pass with
a manual clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from structlog.testing import capture_logs

from batchd.clock import ManualClock
from batchd.errors import StoreError
from batchd.notifier import RECORD_FAILED_HOLD_S, Notifier
from batchd.store.base import Delivery, DeliveryState, EventSpec, JobStore
from batchd.store.memory import MemoryJobStore
from batchd.webhooks.schedule import LADDER_S, MAX_ATTEMPTS, MIN_SPAN_S, RetryLadder
from batchd.webhooks.signing import new_secret
from tests.integration.webhooks.conftest import (
    WAIT_S,
    ReceiverFactory,
    Respond,
    Seen,
    endpoint,
    notifier_for,
    oracle_signed,
    pump,
)

DAY = 86400.0
FAR = 10 * 365 * DAY


def status(code: int) -> Respond:
    async def respond(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=code)

    return respond


def script(*codes: int) -> Respond:
    async def respond(_request: web.Request, index: int) -> web.StreamResponse:
        return web.Response(status=codes[min(index, len(codes) - 1)])

    return respond


async def advance_to_next_due(store: JobStore, clock: ManualClock) -> bool:
    """Move the clock to the next pending delivery; False when none is left."""
    pending = await store.due_deliveries(now=clock.now() + FAR)
    if not pending:
        return False
    clock.set(max(clock.now(), min(d.next_attempt_at for d in pending)))
    return True


async def run_to_completion(notifier: Notifier, store: JobStore, clock: ManualClock) -> None:
    await pump(notifier)
    while await advance_to_next_due(store, clock):
        await pump(notifier)


async def test_every_delivered_request_verifies_with_standardwebhooks(
    make_receiver: ReceiverFactory, store: JobStore
):
    receiver = await make_receiver()
    secret = new_secret()
    clock = ManualClock(time.time())
    events = [
        await store.append_event(EventSpec(t, {"job_id": f"job_{i}"}), now=clock.now())
        for i, t in enumerate(["submission.accepted", "batch.created", "batch.succeeded"])
    ]
    notifier = notifier_for(store, [endpoint("a", receiver.url, secret)], clock)
    try:
        await pump(notifier)
    finally:
        await notifier.close()
    assert sorted(receiver.ids()) == sorted(e.id for e in events)
    for seen in receiver.seen:
        payload = Webhook(secret).verify(seen.body, seen.headers)
        stored = next(e for e in events if e.id == seen.id)
        assert payload["type"] == stored.type
        assert payload["data"] == stored.data
    for event in events:
        [delivery] = await store.deliveries_for(event.id)
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 204)


async def test_retries_carry_the_same_id_and_fresh_timestamps(
    make_receiver: ReceiverFactory, store: JobStore
):
    receiver = await make_receiver(script(500, 500, 200))
    secret = new_secret()
    clock = ManualClock(time.time())
    event = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(store, [endpoint("a", receiver.url, secret)], clock)
    try:
        await run_to_completion(notifier, store, clock)
    finally:
        await notifier.close()
    assert receiver.ids() == [event.id] * 3
    stamps = [s.timestamp for s in receiver.seen]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert all(oracle_signed(secret, s) for s in receiver.seen)
    assert len({s.headers["webhook-signature"] for s in receiver.seen}) == 3
    assert len({s.body for s in receiver.seen}) == 1
    [delivery] = await store.deliveries_for(event.id)
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 3)


async def test_events_go_only_to_endpoints_whose_filter_wants_them(
    make_receiver: ReceiverFactory, store: JobStore
):
    everything, batches = await make_receiver(), await make_receiver()
    clock = ManualClock(time.time())
    created = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    accepted = await store.append_event(EventSpec("submission.accepted", {}), now=clock.now())
    endpoints = [
        endpoint("all", everything.url),
        endpoint("batches", batches.url, events=("batch.*",)),
    ]
    notifier = notifier_for(store, endpoints, clock)
    with capture_logs() as logs:
        try:
            await pump(notifier)
        finally:
            await notifier.close()
    assert sorted(everything.ids()) == sorted([created.id, accepted.id])
    assert batches.ids() == [created.id]
    logged = [(e["event"], e.get("event_id")) for e in logs if e["log_level"] == "info"]
    assert ("batch.created", created.id) in logged
    assert ("submission.accepted", accepted.id) in logged


async def test_410_disables_the_endpoint_and_stops_deliveries(
    make_receiver: ReceiverFactory, store: JobStore
):
    gone, healthy = await make_receiver(status(410)), await make_receiver()
    clock = ManualClock(time.time())
    first = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(store, [endpoint("gone", gone.url), endpoint("ok", healthy.url)], clock)
    try:
        await run_to_completion(notifier, store, clock)
        later = await store.append_event(EventSpec("batch.running", {}), now=clock.now())
        clock.advance(DAY)
        await run_to_completion(notifier, store, clock)
    finally:
        await notifier.close()
    assert gone.ids() == [first.id]
    health = {h.name: h for h in await store.endpoint_health()}
    assert health["gone"].disabled_at is not None
    assert health["ok"].disabled_at is None
    assert {d.endpoint: d.state for d in await store.deliveries_for(first.id)} == {
        "gone": DeliveryState.DROPPED,
        "ok": DeliveryState.DELIVERED,
    }
    assert [d.endpoint for d in await store.deliveries_for(later.id)] == ["ok"]
    disabled = [e for e in await store.list_events() if e.type == "webhook.endpoint_disabled"]
    assert [e.data["endpoint"] for e in disabled] == ["gone"]
    # The healthy endpoint hears about it; the disabled one is never sent its own notice.
    assert disabled[0].id in healthy.ids()


async def test_a_slow_endpoint_does_not_delay_a_fast_one(
    make_receiver: ReceiverFactory, store: JobStore
):
    release = asyncio.Event()

    async def hang(_request: web.Request, _index: int) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=200)

    slow, fast = await make_receiver(hang), await make_receiver()
    clock = ManualClock(time.time())
    events = [
        await store.append_event(EventSpec("batch.created", {"n": i}), now=clock.now())
        for i in range(3)
    ]
    endpoints = [
        endpoint("slow", slow.url, timeout_s=WAIT_S * 2, max_concurrency=2),
        endpoint("fast", fast.url),
    ]
    notifier = notifier_for(store, endpoints, clock)
    try:
        await notifier.run_once()  # returns without awaiting any attempt
        await fast.wait_until(lambda r: r.finished == 3)
        await notifier.drain("fast")
        await slow.wait_until(lambda r: len(r.seen) == 2)
        # Fast is done while slow's requests are still open; slow holds only its own slots.
        assert slow.finished == 0
        await notifier.run_once()  # a second pass neither waits nor duplicates slow's attempts
        assert notifier.in_flight == 2
        for event in events:
            by_endpoint = {d.endpoint: d for d in await store.deliveries_for(event.id)}
            assert by_endpoint["fast"].state == DeliveryState.DELIVERED
            assert by_endpoint["slow"].state == DeliveryState.PENDING
            assert by_endpoint["slow"].attempts == 0
        release.set()
        await notifier.drain()
        await pump(notifier)
    finally:
        release.set()
        await notifier.close()
    assert sorted(slow.ids()) == sorted(e.id for e in events)
    assert sorted(fast.ids()) == sorted(e.id for e in events)


async def test_a_receiver_down_for_a_day_gets_every_event_under_its_own_id(
    make_receiver: ReceiverFactory, store: JobStore
):
    clock = ManualClock(time.time())
    start = clock.now()

    async def down_for_a_day(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=200 if clock.now() >= start + DAY else 503)

    receiver = await make_receiver(down_for_a_day)
    secret = new_secret()
    events = []
    for i in range(5):
        events.append(
            await store.append_event(EventSpec("batch.running", {"n": i}), now=clock.now())
        )
        clock.advance(600.0)  # events keep coming while the receiver is down
    notifier = notifier_for(store, [endpoint("a", receiver.url, secret)], clock, seed=42)
    try:
        await run_to_completion(notifier, store, clock)
    finally:
        await notifier.close()

    by_id: dict[str, list[Seen]] = defaultdict(list)
    for seen in receiver.seen:
        by_id[seen.id].append(seen)
    assert set(by_id) == {e.id for e in events}
    for event in events:
        attempts = by_id[event.id]
        [delivery] = await store.deliveries_for(event.id)
        assert delivery.state == DeliveryState.DELIVERED
        assert delivery.attempts == len(attempts) >= 2
        assert all(oracle_signed(secret, s) for s in attempts)
        assert {s.body for s in attempts} == {attempts[0].body}
        assert attempts[-2].timestamp < start + DAY <= attempts[-1].timestamp
        assert_follows_the_ladder([s.timestamp for s in attempts])


def assert_follows_the_ladder(stamps: list[int]) -> None:
    """Gaps between attempts are the ladder's rungs, +/-20 % (stamps are whole seconds)."""
    for rung, (before, after) in enumerate(itertools.pairwise(stamps)):
        gap = after - before
        assert LADDER_S[rung] * 0.8 - 1 <= gap <= LADDER_S[rung] * 1.2 + 1, (rung, gap)


async def test_a_receiver_that_never_recovers_ends_in_a_dead_letter(
    make_receiver: ReceiverFactory, store: JobStore
):
    dead, watcher = await make_receiver(status(500)), await make_receiver()
    clock = ManualClock(time.time())
    event = await store.append_event(EventSpec("batch.failed", {}), now=clock.now())
    endpoints = [endpoint("dead", dead.url), endpoint("watcher", watcher.url)]
    notifier = notifier_for(store, endpoints, clock, seed=7)
    with capture_logs() as logs:
        try:
            await run_to_completion(notifier, store, clock)
        finally:
            await notifier.close()
    assert dead.ids() == [event.id] * MAX_ATTEMPTS
    stamps = [s.timestamp for s in dead.seen]
    assert stamps[-1] - stamps[0] >= MIN_SPAN_S - 1
    by_endpoint = {d.endpoint: d for d in await store.deliveries_for(event.id)}
    assert by_endpoint["dead"].state == DeliveryState.DEAD
    assert by_endpoint["dead"].attempts == MAX_ATTEMPTS
    letters = [e for e in await store.list_events() if e.type == "webhook.dead_letter"]
    assert [e.data for e in letters] == [
        {
            "endpoint": "dead",
            "event_id": event.id,
            "event_type": "batch.failed",
            "attempts": MAX_ATTEMPTS,
            "last_status": 500,
            "last_error": "HTTP 500",
        }
    ]
    assert [d.endpoint for d in await store.deliveries_for(letters[0].id)] == ["watcher"]
    assert letters[0].id in watcher.ids()
    assert "webhook.dead_letter" in [e["event"] for e in logs]
    assert [e.id for e in await store.list_events(undelivered=True)] == [event.id]


async def test_an_endpoint_with_a_short_ladder_gives_up_after_it(
    make_receiver: ReceiverFactory, store: JobStore
):
    """A test environment's ladder (retry_delays_s = [1, 2], min_retry_span_s = 0): three
    attempts within seconds, then a dead letter, instead of ten over three days."""
    dead = await make_receiver(status(500))
    clock = ManualClock(time.time())
    event = await store.append_event(EventSpec("batch.failed", {}), now=clock.now())
    short = endpoint("dead", dead.url, retry=RetryLadder((1.0, 2.0), 0.0))
    notifier = notifier_for(store, [short], clock, seed=7)
    try:
        await run_to_completion(notifier, store, clock)
    finally:
        await notifier.close()
    assert dead.ids() == [event.id] * 3
    stamps = [s.timestamp for s in dead.seen]
    assert stamps[-1] - stamps[0] <= 5
    [delivery] = await store.deliveries_for(event.id)
    assert (delivery.state, delivery.attempts) == (DeliveryState.DEAD, 3)


async def test_deliveries_of_a_removed_endpoint_are_dropped(
    make_receiver: ReceiverFactory, store: JobStore
):
    receiver = await make_receiver(status(503))
    clock = ManualClock(time.time())
    event = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(store, [endpoint("a", receiver.url)], clock)
    try:
        await pump(notifier)
        notifier.set_endpoints([])
        await pump(notifier)
    finally:
        await notifier.close()
    [delivery] = await store.deliveries_for(event.id)
    assert delivery.state == DeliveryState.DROPPED
    assert len(receiver.seen) == 1


async def test_replay_sends_an_event_again_under_the_same_id(
    make_receiver: ReceiverFactory, store: JobStore
):
    receiver = await make_receiver()
    clock = ManualClock(time.time())
    event = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(store, [endpoint("a", receiver.url)], clock)
    try:
        await pump(notifier)
        assert await store.replay(event_ids=[event.id], now=clock.now()) == 1
        await pump(notifier)
    finally:
        await notifier.close()
    assert receiver.ids() == [event.id, event.id]


async def test_run_delivers_and_stops_when_told(make_receiver: ReceiverFactory, store: JobStore):
    receiver = await make_receiver()
    clock = ManualClock(time.time())
    notifier = Notifier(store, [endpoint("a", receiver.url)], clock=clock, poll_interval_s=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    event = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier.wake()
    await receiver.wait_until(lambda r: len(r.seen) == 1)
    stop.set()
    await asyncio.wait_for(task, timeout=WAIT_S)
    assert receiver.ids() == [event.id]


class _FlakyStore(MemoryJobStore):
    """Fails to record the first attempt (a full disk, say)."""

    failures = 1

    async def record_delivery(self, *args: Any, **kwargs: Any) -> Delivery:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full")
        return await super().record_delivery(*args, **kwargs)


async def test_an_attempt_the_store_failed_to_record_is_held_then_made_again(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    clock = ManualClock(time.time())
    flaky = _FlakyStore()
    event = await flaky.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(flaky, [endpoint("a", receiver.url)], clock)
    try:
        with capture_logs() as logs:
            await pump(notifier)
        assert "webhook.record_failed" in [e["event"] for e in logs]
        await pump(notifier)  # held: no hot loop against the receiver
        assert receiver.ids() == [event.id]
        clock.advance(RECORD_FAILED_HOLD_S)
        await pump(notifier)
    finally:
        await notifier.close()
    assert receiver.ids() == [event.id, event.id]
    [delivery] = await flaky.deliveries_for(event.id)
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 1)


async def test_retry_after_pauses_the_whole_endpoint_not_one_event(
    make_receiver: ReceiverFactory, store: JobStore
):
    async def busy_once(_request: web.Request, index: int) -> web.StreamResponse:
        if index == 0:
            return web.Response(status=429, headers={"Retry-After": "120"})
        return web.Response(status=204)

    receiver = await make_receiver(busy_once)
    clock = ManualClock(time.time())
    events = [
        await store.append_event(EventSpec("batch.created", {"i": i}), now=clock.now())
        for i in range(3)
    ]
    notifier = notifier_for(store, [endpoint("a", receiver.url, max_concurrency=1)], clock)
    try:
        await pump(notifier)  # the first attempt gets 429 Retry-After: 120
        clock.advance(60)
        await pump(notifier)
        assert len(receiver.seen) == 1  # the other events wait too
        clock.advance(61)
        await run_to_completion(notifier, store, clock)
    finally:
        await notifier.close()
    assert sorted(receiver.ids()) == sorted([events[0].id] * 2 + [e.id for e in events[1:]])
    assert all(receiver.seen[i].timestamp >= receiver.seen[0].timestamp + 120 for i in (1, 2, 3))
