"""The outbox half of the ``JobStore`` seam: events, their fan-out to webhook endpoints, the
deliveries and the endpoints' health (``JobStore`` inherits ``OutboxVerbs``).

Events are appended in the same transaction as the state change that caused them (a verb's
``event=``), or alone with ``append_event``; ``fan_out`` hands each to the configured endpoints
as PENDING deliveries, which the notifier attempts and records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchd.models import Event


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event to append together with a state change."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # attempts exhausted: a dead letter
    DROPPED = "dropped"  # the endpoint was disabled (410) or removed from the configuration


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one webhook endpoint. ``payload`` holds the exact bytes to send."""

    event_id: str
    endpoint: str
    event_type: str
    payload: bytes
    state: str
    attempts: int
    next_attempt_at: float
    first_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    name: str
    disabled_at: float | None = None
    disabled_reason: str | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None
    consecutive_failures: int = 0
    pending: int = 0
    dead: int = 0


class OutboxVerbs(Protocol):
    async def append_event(
        self,
        event: EventSpec,
        *,
        now: float,
        submission_id: str | None = None,
        job_id: str | None = None,
    ) -> Event:
        """Append a standalone event (one that no state change carries)."""
        ...

    async def unfanned_events(self, limit: int = 500) -> list[Event]:
        """Events not yet handed to the sinks, oldest first."""
        ...

    async def fan_out(self, event_id: str, endpoints: Sequence[str], *, now: float) -> None:
        """Mark the event handed to the sinks and create a PENDING delivery per endpoint.
        Idempotent: existing deliveries are left alone."""
        ...

    async def due_deliveries(
        self, *, now: float, limit: int = 500, endpoints: Sequence[str] | None = None
    ) -> list[Delivery]:
        """PENDING deliveries with ``next_attempt_at <= now``, oldest event first."""
        ...

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
        """Record one attempt (``attempts`` + 1) and its result, updating the endpoint's health.
        ``event`` (for example ``webhook.dead_letter``) is appended in the same transaction."""
        ...

    async def get_event(self, event_id: str) -> Event | None: ...

    async def list_events(
        self,
        *,
        since: float | None = None,
        undelivered: bool = False,
        limit: int = 1000,
        newest_first: bool = False,
        after: str | None = None,
    ) -> list[Event]:
        """Oldest first (or newest first). ``undelivered``: not yet fanned out, or with a
        PENDING/DEAD delivery. ``after``: only those listed after the event with that id (a page
        cursor; an unknown id lists nothing)."""
        ...

    async def deliveries_for(self, event_id: str) -> list[Delivery]: ...

    async def replay(
        self, *, event_ids: Sequence[str] = (), since: float | None = None, now: float
    ) -> int:
        """Make events deliverable again: un-fan them out so that every current endpoint gets a
        fresh PENDING delivery (same event id, attempts reset). Returns how many events."""
        ...

    async def disable_endpoint(self, name: str, reason: str, *, now: float) -> None:
        """Disable (410): drop its PENDING deliveries and stop fanning out to it."""
        ...

    async def enable_endpoint(self, name: str) -> None: ...

    async def endpoint_health(self) -> list[EndpointHealth]: ...
