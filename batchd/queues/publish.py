"""Results back to the queue: each request's result to its ``reply_to`` (or the source's
``results`` queue/stream), and a batch message's completion, like ``results.ready``.

When a flush is accepted, and before its messages are acknowledged, the source notes it here:
``<data_dir>/queues/<source>/publish/<submission id>.json`` (the requests' ``reply_to``, and
whether it was a batch message), durable. Each pass, a noted submission that is DONE is
published from its ``results.jsonl`` (or its ``results.ready`` event) and its note replaced by a
tombstone; one that ended otherwise (rejected, abandoned) is dropped. A crash or a broker outage
in the middle publishes the whole submission again: at least once, each message with a stable id
(``<submission id>/<custom_id>``, or the event id), so a consumer can drop repeats.

A result message (JSON): ``custom_id``, ``status_code``, ``response``, ``error``, ``usage``
(the response's, when it has one) and ``submission_id``; AMQP ``correlation_id`` = custom_id.
A ``reply_to`` queue that does not exist (AMQP) gets the result sent to the source's results
queue instead, with the ``batchd-reply-to-missing`` header naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from batchd.clock import Clock
from batchd.models import Submission, SubmissionState
from batchd.queues.broker import Broker, Outgoing
from batchd.spool import write_atomic
from batchd.store.base import JobStore

log = structlog.get_logger(__name__)

CHUNK: Final = 500  # results per publish call
TOMBSTONE_TTL_S: Final = 7 * 86_400.0
MISSING_HEADER: Final = "batchd-reply-to-missing"


class ResultPublisher:
    def __init__(
        self, store: JobStore, folder: Path, *, results_to: str, source: str, clock: Clock
    ) -> None:
        self._store = store
        self._folder = folder
        self._results_to = results_to
        self._source = source
        self._clock = clock
        self.published = 0

    def set_results_to(self, results_to: str) -> None:
        self._results_to = results_to

    def note(self, submission_id: str, *, batch: bool, replies: Mapping[str, str]) -> None:
        """Remember to publish this submission's results (idempotent; never after it was)."""
        if (self._folder / f"{submission_id}.done").exists():
            return
        path = self._folder / f"{submission_id}.json"
        if not path.exists():
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = {"submission_id": submission_id, "batch": batch, "replies": dict(replies)}
            write_atomic(path, json.dumps(data).encode())

    def noted(self) -> list[str]:
        if not self._folder.exists():
            return []
        return sorted(p.stem for p in self._folder.glob("*.json"))

    async def run_once(self, broker: Broker) -> int:
        """Publish every noted submission that is DONE (``BrokerDown`` stops the pass)."""
        done = 0
        for submission_id in self.noted():
            sub = await self._store.get_submission(submission_id)
            if sub is not None and sub.state is not SubmissionState.DONE:
                if sub.state in (SubmissionState.REJECTED, SubmissionState.ABANDONED):
                    self._finish(submission_id)
                continue
            if sub is not None:
                note = json.loads((self._folder / f"{submission_id}.json").read_bytes())
                done += await self._publish(broker, sub, note)
            self._finish(submission_id)
        self._expire()
        return done

    async def _publish(self, broker: Broker, sub: Submission, note: dict[str, Any]) -> int:
        if note["batch"]:
            event = await self._ready_event(sub)
            if event is None:
                log.warning(
                    "queue.results_event_missing", source=self._source, submission_id=sub.id
                )
                return 0
            await self._send(broker, [Outgoing(self._results_to, event[1], event[0])])
            count = 1
        else:
            results = Path(sub.results_dir or "") / "results.jsonl"
            count = 0
            for chunk in _chunks(results):
                await self._send(
                    broker, [self._result(sub, line, note["replies"]) for line in chunk]
                )
                count += len(chunk)
        self.published += count
        log.info(
            "queue.results_published", source=self._source, submission_id=sub.id, messages=count
        )
        return count

    def _result(self, sub: Submission, line: bytes, replies: Mapping[str, str]) -> Outgoing:
        value = json.loads(line)
        custom_id = str(value.get("custom_id"))
        response = value.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        body = {
            "custom_id": custom_id,
            "status_code": value.get("status_code"),
            "response": response,
            "error": value.get("error"),
            "usage": usage,
            "submission_id": sub.id,
        }
        return Outgoing(
            replies.get(custom_id, self._results_to),
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            f"{sub.id}/{custom_id}",
            correlation_id=custom_id,
        )

    async def _send(self, broker: Broker, messages: list[Outgoing]) -> None:
        refused = await broker.publish(messages)
        if not refused:
            return
        fallback = [
            Outgoing(
                self._results_to,
                m.body,
                m.message_id,
                m.correlation_id,
                {**m.headers, MISSING_HEADER: m.to},
            )
            for m in refused
            if m.to != self._results_to
        ]
        log.warning(
            "queue.reply_to_missing",
            source=self._source,
            queues=sorted({m.to for m in refused})[:5],
            messages=len(refused),
            sent_to=self._results_to,
        )
        lost = await broker.publish(fallback) if fallback else []
        if lost or len(fallback) < len(refused):
            log.error("queue.results_unroutable", source=self._source, queue=self._results_to)

    async def _ready_event(self, sub: Submission) -> tuple[str, bytes] | None:
        """The submission's ``results.ready`` event: (its id, the message body)."""
        since = (sub.finished_at or sub.created_at) - 60
        after = None
        while True:
            events = await self._store.list_events(since=since, limit=500, after=after)
            for event in events:
                if event.type == "results.ready" and event.data.get("submission_id") == sub.id:
                    body = {"id": event.id, "type": event.type, "data": event.data}
                    return event.id, json.dumps(body, ensure_ascii=False).encode()
            if len(events) < 500:
                return None
            after = events[-1].id

    def _finish(self, submission_id: str) -> None:
        (self._folder / f"{submission_id}.done").touch()
        (self._folder / f"{submission_id}.json").unlink(missing_ok=True)

    def _expire(self) -> None:
        now = self._clock.now()
        for path in self._folder.glob("*.done") if self._folder.exists() else []:
            if now - path.stat().st_mtime >= TOMBSTONE_TTL_S:
                path.unlink(missing_ok=True)


def _chunks(path: Path) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                chunk.append(line)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
