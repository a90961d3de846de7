"""The outbox half of ``MemoryJobStore``: events, fan-out, deliveries, endpoint health.

Same rules as ``sqlite_outbox.py``: ``fan_out`` creates no delivery for a disabled endpoint;
``replay`` deletes the chosen events' deliveries and un-fans them out.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchd.errors import StoreError
from batchd.models import Event, Job, Submission
from batchd.store import rules
from batchd.store.base import Delivery, DeliveryState, EndpointHealth, EventSpec


@dataclass(slots=True)
class StoredEvent:
    seq: int
    event: Event
    data_json: str
    payload: bytes
    fanned_out_at: float | None = None

    def value(self) -> Event:
        """A fresh copy (the data decoded again, as storage would)."""
        return replace(self.event, data=json.loads(self.data_json))


def first(values: Iterable[Any], limit: int) -> list[Any]:
    return list(itertools.islice(values, max(0, limit)))


class MemoryOutbox:
    """Outbox verbs over dicts (mixed into ``MemoryJobStore``, which owns the other dicts)."""

    _subs: dict[str, Submission]
    _jobs: dict[str, Job]

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._events: dict[str, StoredEvent] = {}  # insertion order is append order
        self._deliveries: dict[tuple[str, str], Delivery] = {}
        self._endpoints: dict[str, EndpointHealth] = {}

    def _stored(self, event_id: str) -> StoredEvent:
        stored = self._events.get(event_id)
        if stored is None:
            raise StoreError(f"event {event_id} not found")
        return stored

    def _add_event(self, new: rules.NewEvent | None) -> None:
        if new is not None:
            seq = next(self._seq)
            self._events[new.event.id] = StoredEvent(seq, new.event, new.data_json, new.payload)

    async def append_event(
        self,
        event: EventSpec,
        *,
        now: float,
        submission_id: str | None = None,
        job_id: str | None = None,
    ) -> Event:
        if submission_id is not None and submission_id not in self._subs:
            raise StoreError(f"submission {submission_id} not found")
        if job_id is not None and job_id not in self._jobs:
            raise StoreError(f"job {job_id} not found")
        built = rules.build_event(event, now=now, submission_id=submission_id, job_id=job_id)
        self._add_event(built)
        return self._events[built.event.id].value()

    async def unfanned_events(self, limit: int = 500) -> list[Event]:
        found = (e for e in self._events.values() if e.fanned_out_at is None)
        return [e.value() for e in first(found, limit)]

    async def fan_out(self, event_id: str, endpoints: Sequence[str], *, now: float) -> None:
        stored = self._stored(event_id)
        for name in endpoints:
            health = self._endpoints.setdefault(name, EndpointHealth(name))
            key = (event_id, name)
            if health.disabled_at is None and key not in self._deliveries:
                self._deliveries[key] = Delivery(
                    event_id, name, stored.event.type, stored.payload, DeliveryState.PENDING, 0, now
                )
        if stored.fanned_out_at is None:
            stored.fanned_out_at = now

    def _ordered(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        return sorted(deliveries, key=lambda d: (self._events[d.event_id].seq, d.endpoint))

    async def due_deliveries(
        self, *, now: float, limit: int = 500, endpoints: Sequence[str] | None = None
    ) -> list[Delivery]:
        names = None if endpoints is None else set(endpoints)
        due = (
            d
            for d in self._deliveries.values()
            if d.state == DeliveryState.PENDING
            and d.next_attempt_at <= now
            and (names is None or d.endpoint in names)
        )
        return first(self._ordered(due), limit)

    async def record_delivery(
        self,
        event_id: str,
        endpoint: str,
        *,
        now: float,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: float | None,
        event: EventSpec | None = None,
    ) -> Delivery:
        current = self._deliveries.get((event_id, endpoint))
        if current is None:
            raise StoreError(f"no delivery of event {event_id} to {endpoint}")
        if not rules.attempt_stands(current, state):
            return current
        done = rules.attempted(
            current,
            now=now,
            state=state,
            status=status,
            error=error,
            next_attempt_at=next_attempt_at,
        )
        health = rules.health_after(
            self._endpoints.get(endpoint, EndpointHealth(endpoint)),
            delivered=state == DeliveryState.DELIVERED,
            now=now,
        )
        source = self._events[event_id].event
        built = (
            rules.build_event(
                event, now=now, submission_id=source.submission_id, job_id=source.job_id
            )
            if event
            else None
        )
        self._deliveries[(event_id, endpoint)] = done
        self._endpoints[endpoint] = health
        self._add_event(built)
        return done

    async def get_event(self, event_id: str) -> Event | None:
        stored = self._events.get(event_id)
        return None if stored is None else stored.value()

    async def list_events(
        self,
        *,
        since: float | None = None,
        undelivered: bool = False,
        limit: int = 1000,
        newest_first: bool = False,
        after: str | None = None,
    ) -> list[Event]:
        ordered = list(self._events.values())
        if newest_first:
            ordered.reverse()
        if after is not None:
            ids = [e.event.id for e in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        open_ids = {d.event_id for d in self._deliveries.values() if d.state in rules.UNDELIVERED}
        found = (
            e
            for e in ordered
            if (since is None or e.event.created_at >= since)
            and (not undelivered or e.fanned_out_at is None or e.event.id in open_ids)
        )
        return [e.value() for e in first(found, limit)]

    async def deliveries_for(self, event_id: str) -> list[Delivery]:
        found = (d for d in self._deliveries.values() if d.event_id == event_id)
        return sorted(found, key=lambda d: d.endpoint)

    async def replay(
        self, *, event_ids: Sequence[str] = (), since: float | None = None, now: float
    ) -> int:
        ids = set(event_ids)
        chosen = [
            e
            for e in self._events.values()
            if e.event.id in ids or (since is not None and e.event.created_at >= since)
        ]
        chosen_ids = {e.event.id for e in chosen}
        for stored in chosen:
            stored.fanned_out_at = None
        for key in [k for k in self._deliveries if k[0] in chosen_ids]:
            del self._deliveries[key]
        return len(chosen)

    async def disable_endpoint(self, name: str, reason: str, *, now: float) -> None:
        health = self._endpoints.get(name, EndpointHealth(name))
        if health.disabled_at is None:
            health = replace(health, disabled_at=now, disabled_reason=reason)
        self._endpoints[name] = health
        for key, d in list(self._deliveries.items()):
            if d.endpoint == name and d.state == DeliveryState.PENDING:
                self._deliveries[key] = replace(d, state=DeliveryState.DROPPED)

    async def enable_endpoint(self, name: str) -> None:
        health = self._endpoints.get(name)
        if health is not None:
            self._endpoints[name] = replace(
                health, disabled_at=None, disabled_reason=None, consecutive_failures=0
            )

    async def endpoint_health(self) -> list[EndpointHealth]:
        def count(name: str, state: str) -> int:
            return sum(d.endpoint == name and d.state == state for d in self._deliveries.values())

        return [
            replace(
                h,
                pending=count(h.name, DeliveryState.PENDING),
                dead=count(h.name, DeliveryState.DEAD),
            )
            for h in sorted(self._endpoints.values(), key=lambda h: h.name)
        ]
