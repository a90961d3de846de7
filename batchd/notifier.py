"""The notifier: drain the outbox to every sink.

A pass (``run_once``):

1. Fan out: each event not yet handed to the sinks is written to the structured log (the log
   line's event name is the event type) and gets a PENDING delivery per webhook endpoint that
   wants it (``store.fan_out``). A crash between the two only repeats the log line.
2. Drop the deliveries of endpoints that are no longer configured.
3. Start the due deliveries of each endpoint as tasks, at most ``max_concurrency`` in flight per
   endpoint. The pass never awaits an attempt: a slow or dead endpoint holds only its own slots,
   and each attempt records its own result (``store.record_delivery``) and wakes the loop.

Every attempt of an event carries the event's id as ``webhook-id``. An attempt cut short by a
crash or a stop is simply made again (at-least-once, same id).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import structlog

from batchd import metrics
from batchd.clock import Clock
from batchd.loops import Waker, run_loop
from batchd.models import Event
from batchd.store.base import Delivery, DeliveryState, EndpointHealth, JobStore
from batchd.webhooks.decision import Decision, decide, targets_for
from batchd.webhooks.delivery import AttemptResult, deliver, make_session
from batchd.webhooks.endpoint import WebhookEndpoint

log = structlog.get_logger(__name__)

SessionFactory = Callable[[bool], aiohttp.ClientSession]  # allow_private -> session

ORPHAN_HORIZON_S = 10 * 365 * 86400.0  # drop a removed endpoint's deliveries, due or not
MAX_ENDPOINT_HOLD_S = 3600.0  # a receiver's Retry-After is honoured up to an hour
RECORD_FAILED_HOLD_S = 30.0  # after the store failed to record an attempt
_LOG_RESERVED = frozenset(
    {"event", "event_id", "level", "log_level", "timestamp", "logger", "exc_info"}
)


def _default_sessions(allow_private: bool) -> aiohttp.ClientSession:
    return make_session(allow_private=allow_private)


def log_event(event: Event) -> None:
    """The structured-log sink: one line per event, named after the event type."""
    context: dict[str, Any] = {"event_id": event.id}
    if event.submission_id is not None:
        context["submission_id"] = event.submission_id
    if event.job_id is not None:
        context["job_id"] = event.job_id
    for key, value in event.data.items():
        context[f"data_{key}" if key in _LOG_RESERVED else key] = value
    log.info(event.type, **context)


def disabled_names(health: Mapping[str, EndpointHealth]) -> set[str]:
    return {name for name, h in health.items() if h.disabled_at is not None}


class Notifier:
    name = "notifier"

    def __init__(
        self,
        store: JobStore,
        endpoints: Sequence[WebhookEndpoint],
        *,
        clock: Clock,
        session_factory: SessionFactory | None = None,
        rng: random.Random | None = None,
        poll_interval_s: float = 5.0,
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._endpoints = {e.name: e for e in endpoints}
        self._clock = clock
        self._session_factory = session_factory or _default_sessions
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._rng = rng or random.Random()
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._in_flight: dict[str, dict[str, asyncio.Task[None]]] = {}
        self._hold_until: dict[tuple[str, str], float] = {}
        # An endpoint that answered with Retry-After (429, 503): nothing is sent to it before.
        self._endpoint_hold: dict[str, float] = {}
        self._wake = Waker()
        self._more = False
        self._next_due: float | None = None

    # ------------------------------------------------------------------ control
    def set_endpoints(self, endpoints: Sequence[WebhookEndpoint]) -> None:
        """Apply a reloaded configuration; attempts in flight finish with the old settings."""
        self._endpoints = {e.name: e for e in endpoints}
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._in_flight.values())

    # ------------------------------------------------------------------ the pass
    async def run_once(self) -> int:
        now = self._clock.now()
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None
        self._hold_until = {k: t for k, t in self._hold_until.items() if t > now}
        self._endpoint_hold = {k: t for k, t in self._endpoint_hold.items() if t > now}
        health = {h.name: h for h in await self._store.endpoint_health()}
        disabled = disabled_names(health)
        done = await self._fan_out(disabled, now)
        done += await self._drop_orphans(health, now)
        for endpoint in list(self._endpoints.values()):
            if endpoint.name not in disabled:
                done += await self._start_due(endpoint, now)
        return done

    async def wait(self) -> None:
        delay = 0.0 if self._more else self._poll_interval_s
        if self._next_due is not None:
            delay = min(delay, self._next_due - self._clock.now())
        await self._wake.wait(max(0.05, delay))

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until ``stop`` is set, then ``close()``."""
        try:
            await run_loop(self, stop, lambda _name: None)
        finally:
            await self.close()

    async def drain(self, endpoint: str | None = None) -> None:
        """Wait for every attempt in flight (to ``endpoint``, or to all) to finish and be
        recorded."""
        while tasks := self._tasks(endpoint):
            await asyncio.gather(*tasks, return_exceptions=True)

    def _tasks(self, endpoint: str | None = None) -> list[asyncio.Task[None]]:
        return [
            task
            for name, tasks in self._in_flight.items()
            if endpoint is None or name == endpoint
            for task in tasks.values()
        ]

    async def close(self, grace_s: float = 5.0) -> None:
        """Let attempts in flight finish within ``grace_s``, cancel the rest (they stay PENDING
        and are made again after a restart), and close the HTTP sessions."""
        tasks = self._tasks()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    # ------------------------------------------------------------------ steps
    async def _fan_out(self, disabled: set[str], now: float) -> int:
        events = await self._store.unfanned_events(limit=self._batch_size)
        self._more = len(events) >= self._batch_size
        for event in events:
            log_event(event)
            targets = targets_for(event, self._endpoints.values(), disabled)
            await self._store.fan_out(event.id, targets, now=now)
        return len(events)

    async def _drop_orphans(self, health: Mapping[str, EndpointHealth], now: float) -> int:
        dropped = 0
        for name, h in health.items():
            if h.pending and name not in self._endpoints:
                dropped += await self._drop_all(name, now)
        return dropped

    async def _drop_all(self, name: str, now: float) -> int:
        running = self._in_flight.get(name, {})
        due = await self._store.due_deliveries(
            now=now + ORPHAN_HORIZON_S, limit=self._batch_size, endpoints=[name]
        )
        chosen = [d for d in due if d.event_id not in running]
        for d in chosen:
            await self._store.record_delivery(
                d.event_id,
                name,
                now=now,
                state=DeliveryState.DROPPED,
                status=None,
                error="endpoint removed from the configuration",
                next_attempt_at=None,
            )
        if chosen:
            log.warning("webhook.deliveries_dropped", endpoint=name, count=len(chosen))
        return len(chosen)

    async def _start_due(self, endpoint: WebhookEndpoint, now: float) -> int:
        running = self._in_flight.setdefault(endpoint.name, {})
        free = endpoint.max_concurrency - len(running)
        if free <= 0 or self._endpoint_hold.get(endpoint.name, 0.0) > now:
            return 0
        due = await self._store.due_deliveries(
            now=now, limit=len(running) + free + len(self._hold_until), endpoints=[endpoint.name]
        )
        chosen = list(self._startable(due, running, now))[:free]
        for delivery in chosen:
            running[delivery.event_id] = asyncio.create_task(
                self._attempt(endpoint, delivery), name=f"webhook:{endpoint.name}"
            )
        return len(chosen)

    def _startable(
        self, due: Iterable[Delivery], running: Mapping[str, object], now: float
    ) -> Iterable[Delivery]:
        for delivery in due:
            key = (delivery.endpoint, delivery.event_id)
            if delivery.event_id not in running and self._hold_until.get(key, 0.0) <= now:
                yield delivery

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, endpoint: WebhookEndpoint, delivery: Delivery) -> None:
        try:
            session = self._session(endpoint.allow_private)
            result = await deliver(
                session,
                endpoint,
                event_id=delivery.event_id,
                payload=delivery.payload,
                now=self._clock.now(),
            )
            await self._record(endpoint, delivery, result)
        except Exception:
            # The store could not record the attempt: it stays PENDING and is made again later.
            hold = self._clock.now() + RECORD_FAILED_HOLD_S
            self._hold_until[(delivery.endpoint, delivery.event_id)] = hold
            log.exception(
                "webhook.record_failed", endpoint=endpoint.name, event_id=delivery.event_id
            )
        finally:
            self._in_flight.get(endpoint.name, {}).pop(delivery.event_id, None)
            self.wake()

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private)
        if session is None or session.closed:
            session = self._sessions[allow_private] = self._session_factory(allow_private)
        return session

    async def _record(
        self, endpoint: WebhookEndpoint, delivery: Delivery, result: AttemptResult
    ) -> None:
        name, now = endpoint.name, self._clock.now()
        decision = decide(delivery, result, now=now, rng=self._rng, ladder=endpoint.retry)
        await self._store.record_delivery(
            delivery.event_id,
            name,
            now=now,
            state=decision.state,
            status=result.status,
            error=result.error,
            next_attempt_at=decision.next_attempt_at,
            event=decision.event,
        )
        metrics.delivery(name, decision.state, retrying=decision.next_attempt_at is not None)
        if decision.disable_reason is not None:
            await self._store.disable_endpoint(name, decision.disable_reason, now=now)
        if result.retry_after_s is not None and decision.next_attempt_at is not None:
            # The receiver asked for a pause: it applies to the endpoint, not this event only.
            until = now + min(result.retry_after_s, MAX_ENDPOINT_HOLD_S)
            self._endpoint_hold[name] = max(self._endpoint_hold.get(name, 0.0), until)
            self._next_due = until if self._next_due is None else min(self._next_due, until)
        if decision.next_attempt_at is not None:
            due = decision.next_attempt_at
            self._next_due = due if self._next_due is None else min(self._next_due, due)
        _log_attempt(name, delivery, result, decision)


def _log_attempt(name: str, delivery: Delivery, result: AttemptResult, decision: Decision) -> None:
    context = {
        "endpoint": name,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "attempt": delivery.attempts + 1,
        "status": result.status,
        "duration_s": round(result.duration_s, 3),
    }
    if decision.state == DeliveryState.DELIVERED:
        log.info("webhook.delivered", **context)
        return
    log.warning(
        "webhook.attempt_failed",
        **context,
        error=result.error,
        outcome=str(result.outcome),
        state=decision.state,
        next_attempt_at=decision.next_attempt_at,
    )
