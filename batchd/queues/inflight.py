"""What a queue source holds between writing a flush and acknowledging its messages."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchd.queues.broker import REASON_HEADER, SOURCE_HEADER, Incoming, Outgoing
from batchd.queues.commit import Flush, Outcome
from batchd.queues.messages import Parsed, Request

# A flush whose messages are all acknowledged is still recognised this long: an AMQP ack is not
# confirmed, and a connection lost just after it may bring the messages back once more.
ACK_GRACE_S = 900.0
# A record left by an earlier run whose messages never came back (acknowledged before a crash).
RECORD_TTL_S = 7 * 86_400.0


@dataclass
class InFlight:
    """A flush record and the messages of it held unacknowledged."""

    flush: Flush
    remaining: set[str]  # keys whose message is not acknowledged yet
    messages: list[tuple[Incoming, tuple[str, ...]]] = field(default_factory=list)
    outcome: Outcome | None = None
    acked_at: float | None = None  # every message acknowledged (kept ACK_GRACE_S more)


def message_keys(message: Incoming, parsed: Parsed) -> tuple[str, ...]:
    """What recognises a message again: its id, and for a request its route and custom_id."""
    keys = [f"id:{message.key}"] if message.key else []
    if isinstance(parsed, Request):
        keys.append(f"cid:{parsed.route}:{parsed.custom_id}")
    return tuple(keys)


def dead_letters(messages: Sequence[Incoming], to: str, source: str, reason: str) -> list[Outgoing]:
    """The dead-letter copies of ``messages``: same body, id and text headers, plus the
    reason and the source."""
    return [
        Outgoing(
            to,
            m.body,
            m.key or f"{source}-dead-{secrets.token_hex(8)}",
            headers={
                **{k: v for k, v in m.headers.items() if isinstance(v, str)},
                REASON_HEADER: reason,
                SOURCE_HEADER: source,
            },
        )
        for m in messages
    ]


def broker_problem(sources: Sequence[object]) -> str | None:
    """The first queue source's connection problem, for ``STATUS=`` (None: all connected)."""
    problems = (getattr(s, "problem", None) for s in sources)
    return next((p for p in problems if isinstance(p, str)), None)
