"""Outbox invariants under random sequences of verbs (hypothesis, on ``MemoryJobStore``):
never lost, never invented, and "undelivered" always agrees with a simple model."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from batchd.store.base import DeliveryState, EventSpec
from batchd.store.memory import MemoryJobStore

T = TypeVar("T")
ENDPOINTS = st.sampled_from(["a", "b", "c"])
OUTCOMES = st.sampled_from([DeliveryState.DELIVERED, DeliveryState.PENDING, DeliveryState.DEAD])
LATER = 10.0**12


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (the memory store never awaits anything)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("the memory store suspended")


class OutboxMachine(RuleBasedStateMachine):
    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryJobStore()
        self.now = 1_700_000_000.0
        self.order: list[str] = []
        self.fanned: dict[str, bool] = {}
        self.deliveries: dict[tuple[str, str], str] = {}
        self.disabled: set[str] = set()

    def tick(self) -> float:
        self.now += 1
        return self.now

    @rule(target=events, n=st.integers(0, 1000))
    def append(self, n: int) -> str:
        event = run(self.store.append_event(EventSpec("t.note", {"n": n}), now=self.tick()))
        self.order.append(event.id)
        self.fanned[event.id] = False
        return event.id

    @rule(event_id=events, endpoints=st.lists(ENDPOINTS, max_size=3))
    def fan_out(self, event_id: str, endpoints: list[str]) -> None:
        run(self.store.fan_out(event_id, endpoints, now=self.tick()))
        self.fanned[event_id] = True
        for name in endpoints:
            if name not in self.disabled:
                self.deliveries.setdefault((event_id, name), DeliveryState.PENDING)

    @precondition(lambda self: bool(self.deliveries))
    @rule(data=st.data(), outcome=OUTCOMES)
    def attempt(self, data: st.DataObject, outcome: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.deliveries)))
        run(
            self.store.record_delivery(
                *key, now=self.tick(), state=outcome, status=None, error=None, next_attempt_at=None
            )
        )
        # An attempt that ends after its delivery stopped being pending (dropped, dead,
        # delivered) changes it only if it delivered it.
        if self.deliveries[key] == DeliveryState.PENDING or outcome == DeliveryState.DELIVERED:
            self.deliveries[key] = outcome

    @rule(name=ENDPOINTS)
    def disable(self, name: str) -> None:
        run(self.store.disable_endpoint(name, "http 410", now=self.tick()))
        self.disabled.add(name)
        for key, state in self.deliveries.items():
            if key[1] == name and state == DeliveryState.PENDING:
                self.deliveries[key] = DeliveryState.DROPPED

    @rule(name=ENDPOINTS)
    def enable(self, name: str) -> None:
        run(self.store.enable_endpoint(name))
        self.disabled.discard(name)

    @rule(event_id=events)
    def replay(self, event_id: str) -> None:
        assert run(self.store.replay(event_ids=[event_id], now=self.tick())) == 1
        self.fanned[event_id] = False
        self.deliveries = {k: v for k, v in self.deliveries.items() if k[0] != event_id}

    @invariant()
    def never_lost_never_invented(self) -> None:
        assert [e.id for e in run(self.store.list_events(limit=10**6))] == self.order

    @invariant()
    def undelivered_matches_the_model(self) -> None:
        open_states = {DeliveryState.PENDING, DeliveryState.DEAD}
        expected = [
            i
            for i in self.order
            if not self.fanned[i]
            or any(k[0] == i and s in open_states for k, s in self.deliveries.items())
        ]
        found = run(self.store.list_events(undelivered=True, limit=10**6))
        assert [e.id for e in found] == expected
        pending = sorted(
            (k for k, s in self.deliveries.items() if s == DeliveryState.PENDING),
            key=lambda k: (self.order.index(k[0]), k[1]),
        )
        due = run(self.store.due_deliveries(now=LATER, limit=10**6))
        assert [(d.event_id, d.endpoint) for d in due] == pending
        unfanned = sum(not f for f in self.fanned.values())
        assert run(self.store.stats()).undelivered_events == unfanned + len(pending)

    @invariant()
    def payloads_are_the_event_bodies(self) -> None:
        for d in run(self.store.due_deliveries(now=LATER, limit=10**6)):
            event = run(self.store.get_event(d.event_id))
            assert event is not None
            assert json.loads(d.payload)["data"] == event.data


OutboxMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxMachine = OutboxMachine.TestCase
