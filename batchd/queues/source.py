"""A queue source: requests and batches from one broker queue or stream into submissions.

``QueueSource`` is a ``sources.Source`` loop. Each pass connects if needed (after a failure:
``Backoff`` with jitter, the problem shown by ``problem`` for ``STATUS=``), takes what the broker
delivered, and for each message:

- a bad one (``messages.Bad``) is published to the dead-letter queue with the reason in its
  ``batchd-reason`` header, then acknowledged (and counted in the logs);
- a message a remaining flush record holds (redelivered after a crash or a lost connection) is
  recognised: the record is committed (a no-op when it was) and the message acknowledged;
- a batch message is written and committed at once, like a dropped file;
- a request joins its route's batch (``batcher.Batcher``), flushed when due.

Nothing is acknowledged before the store has committed it (``commit.Committer``); what is held
unacknowledged is bounded by ``prefetch``, so a store or provider that cannot keep up slows the
consumption and drops nothing. A lost connection forgets everything held: the broker delivers it
again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from batchd.claims import RouteLike
from batchd.clock import Clock
from batchd.config import Settings
from batchd.queues.batcher import Batcher, BatchLimits, Pending
from batchd.queues.broker import (
    Backoff,
    Broker,
    BrokerDown,
    Incoming,
)
from batchd.queues.commit import Committer, Flush, Outcome
from batchd.queues.config import SourceConfig
from batchd.queues.inflight import (
    ACK_GRACE_S,
    RECORD_TTL_S,
    InFlight,
    dead_letters,
    message_keys,
)
from batchd.queues.messages import Bad, Batch, Limits, parse_message
from batchd.queues.publish import ResultPublisher
from batchd.spool import Modes

log = structlog.get_logger(__name__)

RECEIVE_WAIT_S = 5.0  # one wait for messages at most (the loop runner allows 20 s)


class QueueSource:
    def __init__(
        self,
        cfg: SourceConfig,
        broker: Broker,
        committer: Committer,
        publisher: ResultPublisher,
        routes: Sequence[RouteLike],
        *,
        clock: Clock,
        max_file_bytes: int,
        max_lines: int,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = f"queue:{cfg.name}"
        self._cfg = cfg
        self._broker = broker
        self._committer = committer
        self._publisher = publisher
        self._clock = clock
        self._on_accepted = on_accepted
        self._set_routes(routes)
        self._limits = Limits(cfg.max_request_bytes, max_file_bytes, max_lines)
        self._batcher: Batcher[tuple[Incoming, tuple[str, ...]]] = Batcher(self._batch_limits())
        self._flights: dict[str, InFlight] = {}  # by flush token
        self._by_key: dict[str, str] = {}  # message key -> flush token
        self._received: list[Incoming] = []
        self._replies: dict[object, str] = {}  # a waiting request's reply_to, by message tag
        self._connected = False
        self._resumed = False
        self._backoff = Backoff(max_s=cfg.reconnect_max_s)
        self._next_connect = 0.0
        self.problem: str | None = None  # why the broker is unreachable (STATUS=, check)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"received": 0, "dead_lettered": 0, "recognised": 0, "flushed": 0}

    # ------------------------------------------------------------------ Source
    def start(self) -> None:
        return None

    def close(self) -> None:
        """Drop the connection: whatever is held unacknowledged goes back to the broker."""
        self._connected = False
        self._close_broker()

    def _close_broker(self) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._broker.close())
        except RuntimeError:  # no loop any more: the process is ending, the socket with it
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def apply(self, settings: Settings, modes: Modes) -> None:
        del modes  # the batch files are private (processing/)
        for cfg in settings.sources:
            if cfg.name == self._cfg.name:
                self._cfg = cfg
        self._set_routes(settings.routes)
        self._committer.set_routes(settings.routes)
        self._publisher.set_results_to(self._cfg.results_to)
        self._limits = Limits(
            self._cfg.max_request_bytes, settings.intake.max_file_bytes, settings.intake.max_lines
        )
        self._batcher.limits = self._batch_limits()

    def _set_routes(self, routes: Sequence[RouteLike]) -> None:
        self._routes: Mapping[str, RouteLike] = {r.name: r for r in routes}
        self._endpoints = {r.name: r.endpoint for r in routes}

    def _batch_limits(self) -> BatchLimits:
        cfg = self._cfg
        return BatchLimits(cfg.max_requests, cfg.max_bytes, cfg.max_wait_s, cfg.prefetch)

    # ------------------------------------------------------------------ one pass
    async def run_once(self) -> int:
        if not self._resumed:
            await self._resume()
        if not self._connected and not await self._connect():
            return 0
        try:
            done = await self._settle()
            room = self._room()
            received, self._received = self._received, []
            if room > 0:
                received += await self._broker.receive(room, 0)
            for message in received:
                done += await self._take(message)
            for pending in self._batcher.due(self._clock.now(), held=self.held()):
                done += await self._flush(pending)
            done += await self._publisher.run_once(self._broker)
        except BrokerDown as exc:
            self._lost(str(exc))
            return 0
        return done

    async def drain(self) -> int:
        """At shutdown (the loop stopped): flush every waiting batch and settle what can be,
        so that it is committed and acknowledged now rather than redelivered at the next
        start. With the broker down it does nothing: the broker keeps the messages."""
        if not self._connected:
            return 0
        try:
            done = await self._settle()
            for pending in self._batcher.due(self._clock.now(), closing=True):
                done += await self._flush(pending)
        except BrokerDown as exc:
            self._lost(str(exc))
            return 0
        log.info("queue.drained", source=self._cfg.name, messages=done)
        return done

    async def wait(self) -> None:
        """Until a message arrives, a batch is due, or it is time to reconnect."""
        now = self._clock.now()
        if not self._connected:
            await asyncio.sleep(min(RECEIVE_WAIT_S, max(0.05, self._next_connect - now)))
            return
        due = self._batcher.next_due_at()
        timeout = RECEIVE_WAIT_S if due is None else min(RECEIVE_WAIT_S, max(0.0, due - now))
        room = self._room()
        if any(f.outcome is None and f.messages for f in self._flights.values()) or room <= 0:
            await asyncio.sleep(min(1.0, timeout))  # a commit to retry, or the prefetch is full
            return
        try:
            self._received += await self._broker.receive(room, timeout)
        except BrokerDown as exc:
            self._lost(str(exc))

    def held(self) -> int:
        """Messages held unacknowledged (bounded by the prefetch)."""
        inflight = sum(len(f.messages) for f in self._flights.values())
        return len(self._batcher) + inflight + len(self._received)

    def _room(self) -> int:
        return self._cfg.prefetch - self.held()

    # ------------------------------------------------------------------ connection
    async def _connect(self) -> bool:
        now = self._clock.now()
        if now < self._next_connect:
            return False
        try:
            await self._broker.connect()
        except BrokerDown as exc:
            delay = self._backoff.next_delay()
            self._next_connect = now + delay
            self.problem = f"{self._cfg.describe()}: {exc}"
            log.warning(
                "queue.broker_down",
                source=self._cfg.name,
                error=str(exc),
                retry_in_s=round(delay, 1),
                tries=self._backoff.failures,
            )
            return False
        if self.problem is not None or self._backoff.failures:
            log.info("queue.reconnected", source=self._cfg.name, tries=self._backoff.failures)
        else:
            log.info("queue.connected", source=self._cfg.name, queue=self._cfg.queue)
        self._backoff.reset()
        self.problem = None
        self._connected = True
        return True

    def _lost(self, error: str) -> None:
        """Forget every message held: the broker delivers them again after the reconnect."""
        self._connected = False
        self._batcher.clear()
        self._replies.clear()
        self._received.clear()
        for flight in self._flights.values():
            flight.messages.clear()
        delay = self._backoff.next_delay()
        self._next_connect = self._clock.now() + delay
        self.problem = f"{self._cfg.describe()}: {error}"
        log.warning(
            "queue.connection_lost", source=self._cfg.name, error=error, retry_in_s=round(delay, 1)
        )
        self._close_broker()

    # ------------------------------------------------------------------ messages
    async def _take(self, message: Incoming) -> int:
        self.counts["received"] += 1
        parsed = parse_message(
            message.body,
            message.headers,
            default_route=self._cfg.route,
            routes=self._endpoints,
            limits=self._limits,
        )
        keys = message_keys(message, parsed)
        token = next((self._by_key[k] for k in keys if k in self._by_key), None)
        if token is not None:  # redelivered: its flush was written (and maybe committed)
            self.counts["recognised"] += 1
            self._flights[token].messages.append((message, keys))
            return await self._settle()
        if isinstance(parsed, Bad):
            await self._dead_letter([message], parsed.reason)
            return 1
        if isinstance(parsed, Batch):
            route = self._routes[parsed.route]
            flush = await asyncio.to_thread(
                self._committer.write, route, parsed.name, parsed.data, keys, batch=True
            )
            self._track(flush, [(message, keys)])
            return await self._settle()
        done = 0
        full = self._batcher.full(parsed.route, len(parsed.line))
        if full is not None:
            done += await self._flush(full)
        if not self._batcher.add(
            parsed.route, parsed.custom_id, parsed.line, (message, keys), now=self._clock.now()
        ):
            await self._dead_letter(
                [message], f"custom_id {parsed.custom_id!r} is already waiting in this batch"
            )
            return done + 1
        if parsed.reply_to is not None:
            self._replies[message.tag] = parsed.reply_to
        return done

    async def _flush(self, pending: Pending[tuple[Incoming, tuple[str, ...]]]) -> int:
        route = self._routes[pending.route]
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock.now()))
        name = f"{self._cfg.name}-{stamp}-{secrets.token_hex(3)}.jsonl"
        held = [item for _, _, item in pending.items]
        keys = [k for _, ks in held for k in ks]
        replies = {
            cid: self._replies.pop(m.tag)
            for cid, _, (m, _) in pending.items
            if m.tag in self._replies
        }
        flush = await asyncio.to_thread(
            self._committer.write, route, name, pending.lines, keys, replies=replies
        )
        self._track(flush, held)
        self.counts["flushed"] += 1
        return await self._settle()

    def _track(self, flush: Flush, held: list[tuple[Incoming, tuple[str, ...]]]) -> None:
        self._flights[flush.token] = InFlight(flush, set(flush.keys), list(held))
        self._by_key.update(dict.fromkeys(flush.keys, flush.token))

    async def _settle(self) -> int:
        """Commit the flushes not committed yet; acknowledge (or dead-letter) their messages."""
        done = 0
        for flight in list(self._flights.values()):
            if flight.outcome is None and (flight.messages or not self._connected):
                flight.outcome = await self._commit(flight.flush)
                if flight.outcome is not None and flight.outcome.accepted:
                    self._on_accepted()
                    await asyncio.to_thread(
                        self._publisher.note,
                        flight.outcome.submission_id,
                        batch=flight.flush.batch,
                        replies=flight.flush.replies,
                    )
            if flight.outcome is None or not flight.messages:
                continue
            messages = [m for m, _ in flight.messages]
            if flight.outcome.accepted:
                await self._broker.ack(messages)
            else:
                await self._dead_letter(messages, flight.outcome.reason or "rejected")
            for _, keys in flight.messages:
                flight.remaining.difference_update(keys)
            done += len(messages)
            flight.messages.clear()
            if not flight.remaining and flight.acked_at is None:
                flight.acked_at = self._clock.now()
        self._expire()
        return done

    def _expire(self) -> None:
        now = self._clock.now()
        for token, flight in list(self._flights.items()):
            if flight.outcome is None or flight.messages:
                continue
            if (flight.acked_at is not None and now - flight.acked_at >= ACK_GRACE_S) or (
                now - flight.flush.written_at >= RECORD_TTL_S
            ):
                self._forget(token)

    async def _commit(self, flush: Flush) -> Outcome | None:
        try:
            outcome = await self._committer.commit(flush)
        except Exception as exc:  # the store, a full disk: retried on the next pass
            log.exception(
                "queue.commit_failed", source=self._cfg.name, flush=flush.name, error=str(exc)
            )
            return None
        log.info(
            "queue.committed" if outcome.accepted else "queue.batch_rejected",
            source=self._cfg.name,
            submission_id=outcome.submission_id,
            name=flush.name,
            messages=len(flush.keys),
            **({"reason": outcome.reason} if outcome.reason else {}),
        )
        return outcome

    def _forget(self, token: str) -> None:
        flight = self._flights.pop(token)
        for key in flight.flush.keys:
            if self._by_key.get(key) == token:
                del self._by_key[key]
        self._committer.forget(flight.flush)

    async def _dead_letter(self, messages: Sequence[Incoming], reason: str) -> None:
        outgoing = dead_letters(messages, self._cfg.dead_letter_to, self._cfg.name, reason)
        refused = await self._broker.publish(outgoing)
        if refused:  # declared at connect: someone deleted it; keep the messages
            raise BrokerDown(f"the dead-letter queue {self._cfg.dead_letter_to!r} is missing")
        await self._broker.ack(messages)
        self.counts["dead_lettered"] += len(messages)
        log.warning(
            "queue.dead_lettered",
            source=self._cfg.name,
            reason=reason,
            messages=len(messages),
            total=self.counts["dead_lettered"],
        )

    # ------------------------------------------------------------------ recovery
    async def _resume(self) -> None:
        """Before consuming: the flush records a crash left, committed now (their messages come
        back and are recognised), and this source's half-claimed submissions finished."""
        records = await asyncio.to_thread(self._committer.load)
        for flush in records:
            if flush.route in self._routes:
                self._track(flush, [])
        await self._settle()
        self._resumed = True
        if records:
            log.info("queue.resumed", source=self._cfg.name, flushes=len(records))
