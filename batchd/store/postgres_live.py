"""What a daemon's PostgreSQL store does in the background: wake-ups and lease keep-alive.

**Wake-ups** (``store/wakeups.py``, ``SharedStore``). Every write that creates work for a loop sends
``pg_notify('batchd:<schema>', <topic>)`` in its own transaction (delivered at commit, to every
instance listening, this one included): new jobs → ``submit``, a job created at the provider →
``track``, a job ended → ``collect``, an event appended → ``notify``. The first
``on_wakeup`` opens one connection outside the pool that ``LISTEN``s and calls the subscribed
``wake``s; when it breaks it is opened again after a pause. A notification lost meanwhile only
delays the work until the loop's next timed pass.

**Keep-alive.** An instance holds its claims (jobs, submissions being finished, named tasks)
for ``lease_s`` at a time, and a step may take longer than that (a large upload or download).
While the process lives, every ``lease_s / 3`` it extends to ``now + lease_s`` the leases its
owner still holds (never one that already ran out: that one may be another's by now). When the
process dies (kill -9, host gone, network cut) the renewals stop, and another instance takes
the work over once ``lease_s`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

import psycopg
import structlog

from batchd.clock import Clock
from batchd.errors import StoreError
from batchd.store.postgres_db import Database, Tx
from batchd.store.wakeups import TOPICS, Topic

log = structlog.get_logger(__name__)

LISTEN_RETRY_S: Final = 5.0
NOTIFY: Final = "SELECT pg_notify('batchd:' || current_schema(), %s)"
# The tables whose rows carry a claim (owner, lease_until); ``task_leases`` once it exists.
_HELD: Final = ("jobs", "submissions", "task_leases")


async def notify(tx: Tx, topic: Topic) -> None:
    """Wake ``topic``'s loop on every instance once this transaction commits."""
    await tx.run(NOTIFY, (topic,))


class Live:
    """The background tasks of one open store (none until asked for)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._holder: tuple[str, float] | None = None  # (owner, lease_s): keep_alive

    # ------------------------------------------------------------------ wake-ups
    def on_wakeup(self, topic: Topic, wake: Callable[[], None]) -> None:
        if topic not in TOPICS:
            raise ValueError(f"unknown wake-up topic {topic!r} (known: {', '.join(TOPICS)})")
        self._subscribers.setdefault(topic, []).append(wake)
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="store:listen"
            )

    async def _listen(self) -> None:
        while True:
            try:
                conn = await self._db.connect()
            except StoreError as exc:
                log.warning("store.listen_failed", error=str(exc))
                await asyncio.sleep(LISTEN_RETRY_S)
                continue
            try:
                async with conn:
                    channel = await self._channel(conn)
                    await conn.execute(f'LISTEN "{channel}"')
                    self._wake_all()  # whatever was sent while not listening
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error as exc:
                log.warning("store.listen_lost", error=type(exc).__name__)
            await asyncio.sleep(LISTEN_RETRY_S)

    @staticmethod
    async def _channel(conn: psycopg.AsyncConnection[Any]) -> str:
        cur = await conn.execute("SELECT 'batchd:' || current_schema()")
        row = await cur.fetchone()
        if row is None or row[0] is None:
            raise StoreError("no schema selected: cannot listen for wake-ups")
        return str(row[0]).replace('"', '""')

    def _wake(self, topic: str) -> None:
        for wake in self._subscribers.get(topic, ()):
            wake()

    def _wake_all(self) -> None:
        for topic in self._subscribers:
            self._wake(topic)

    # ------------------------------------------------------------------ keep-alive
    def keep_alive(self, owner: str, lease_s: float) -> None:
        """Keep ``owner``'s leases alive while this process runs (``SharedStore``)."""
        self._holder = (owner, lease_s)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="store:keep-alive"
            )

    async def _renew_forever(self) -> None:
        while True:
            assert self._holder is not None
            await asyncio.sleep(max(0.05, self._holder[1] / 3))
            try:
                await self.renew()
            except StoreError as exc:  # the database is away: the leases may run out
                log.warning("store.keep_alive_failed", error=str(exc))

    async def renew(self) -> int:
        """Extend every lease the owner still holds to ``now + lease_s``; rows extended."""
        if self._holder is None:
            return 0
        owner, lease_s = self._holder
        now = self._clock.now()

        async def body(tx: Tx) -> int:
            changed = 0
            tables = await tx.rows(  # those of _HELD this schema version has, with a lease
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s) "
                "AND column_name IN ('owner', 'lease_until') "
                "GROUP BY table_name HAVING count(*) = 2",
                (list(_HELD),),
            )
            for row in tables:
                changed += await tx.run(
                    f"UPDATE {row['table_name']} SET lease_until = %s "  # noqa: S608
                    "WHERE owner = %s AND lease_until > %s",
                    (now + lease_s, owner, now),
                )
            return changed

        return await self._db.write(body, what="keep leases alive")

    # ------------------------------------------------------------------ close
    async def close(self) -> None:
        tasks = [t for t in (self._listener, self._renewer) if t is not None]
        self._listener = self._renewer = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
