"""The outbox verbs of ``PostgresJobStore``: events, fan-out, deliveries, endpoint health.

The same meaning as ``sqlite_outbox``: ``fan_out`` creates no delivery for a disabled endpoint;
``replay`` deletes the chosen events' deliveries and un-fans them out, so that the next
``fan_out`` creates fresh PENDING deliveries to the endpoints configured then.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchd.errors import StoreError
from batchd.models import Event
from batchd.store import rules
from batchd.store.base import Delivery, DeliveryState, EndpointHealth, EventSpec
from batchd.store.postgres_db import Database, Tx
from batchd.store.postgres_live import notify
from batchd.store.postgres_rows import (
    INSERT_EVENT,
    UPDATE_DELIVERY,
    UPSERT_HEALTH,
    delivery_from_row,
    delivery_params,
    event_from_row,
    event_params,
    health_from_row,
    health_params,
)

_DELIVERY_SELECT = (
    "SELECT d.*, e.type AS event_type, e.payload, e.seq, e.submission_id, e.job_id "
    "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
)
_ADD_DELIVERY = (
    "INSERT INTO deliveries (event_id, endpoint, state, attempts, next_attempt_at) "
    "SELECT %(event_id)s, name, %(state)s, 0, %(now)s FROM endpoints "
    "WHERE name = %(name)s AND disabled_at IS NULL ON CONFLICT DO NOTHING"
)
_UNDELIVERED_SEQS = (
    "seq IN (SELECT seq FROM events WHERE fanned_out_at IS NULL "
    "UNION SELECT e.seq FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
    "WHERE d.state IN ('pending', 'dead'))"
)
_DISABLE = (
    "INSERT INTO endpoints AS p (name, disabled_at, disabled_reason) "
    "VALUES (%(name)s, %(now)s, %(reason)s) "
    "ON CONFLICT (name) DO UPDATE SET "
    "disabled_at = coalesce(p.disabled_at, excluded.disabled_at), "
    "disabled_reason = CASE WHEN p.disabled_at IS NULL THEN excluded.disabled_reason "
    "ELSE p.disabled_reason END"
)
_HEALTH = (
    "SELECT p.*, "
    "(SELECT count(*) FROM deliveries AS d WHERE d.endpoint = p.name AND d.state = 'pending') "
    "AS pending, "
    "(SELECT count(*) FROM deliveries AS d WHERE d.endpoint = p.name AND d.state = 'dead') "
    "AS dead "
    "FROM endpoints AS p ORDER BY p.name"
)


async def insert_event(tx: Tx, new: rules.NewEvent | None) -> None:
    if new is not None:
        await tx.run(INSERT_EVENT, event_params(new))
        await notify(tx, "notify")  # the outbox has work: wake every instance's notifier


class PostgresOutbox:
    """Outbox verbs over ``self._db`` (mixed into ``PostgresJobStore``)."""

    _db: Database

    async def append_event(
        self,
        event: EventSpec,
        *,
        now: float,
        submission_id: str | None = None,
        job_id: str | None = None,
    ) -> Event:
        new = rules.build_event(event, now=now, submission_id=submission_id, job_id=job_id)
        await self._db.write(lambda tx: insert_event(tx, new))
        return new.event

    async def unfanned_events(self, limit: int = 500) -> list[Event]:
        rows = await self._db.fetch(
            "SELECT * FROM events WHERE fanned_out_at IS NULL ORDER BY seq LIMIT %s",
            (max(0, limit),),
        )
        return [event_from_row(r) for r in rows]

    async def fan_out(self, event_id: str, endpoints: Sequence[str], *, now: float) -> None:
        names = list(dict.fromkeys(endpoints))

        async def body(tx: Tx) -> None:
            found = await tx.run(
                "UPDATE events SET fanned_out_at = coalesce(fanned_out_at, %s) WHERE id = %s",
                (now, event_id),
            )
            if not found:
                raise StoreError(f"event {event_id} not found")
            if names:
                await tx.many(
                    "INSERT INTO endpoints (name) VALUES (%s) ON CONFLICT DO NOTHING",
                    [(n,) for n in names],
                )
                rows = [
                    {"event_id": event_id, "name": n, "now": now, "state": DeliveryState.PENDING}
                    for n in names
                ]
                await tx.many(_ADD_DELIVERY, rows)

        await self._db.write(body)

    async def due_deliveries(
        self, *, now: float, limit: int = 500, endpoints: Sequence[str] | None = None
    ) -> list[Delivery]:
        where = "d.state = %s AND d.next_attempt_at <= %s"
        params: list[object] = [DeliveryState.PENDING, now]
        if endpoints is not None:
            where += " AND d.endpoint = ANY(%s)"
            params.append(list(endpoints))
        rows = await self._db.fetch(
            f"{_DELIVERY_SELECT} WHERE {where} ORDER BY e.seq, d.endpoint LIMIT %s",
            (*params, max(0, limit)),
        )
        return [delivery_from_row(r) for r in rows]

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
        async def body(tx: Tx) -> Delivery:
            row = await tx.row(
                f"{_DELIVERY_SELECT} WHERE d.event_id = %s AND d.endpoint = %s FOR UPDATE OF d",
                (event_id, endpoint),
            )
            if row is None:
                raise StoreError(f"no delivery of event {event_id} to {endpoint}")
            current = delivery_from_row(row)
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
            health_row = await tx.row(
                "SELECT * FROM endpoints WHERE name = %s FOR UPDATE", (endpoint,)
            )
            health = EndpointHealth(endpoint) if health_row is None else health_from_row(health_row)
            health = rules.health_after(health, delivered=state == DeliveryState.DELIVERED, now=now)
            await tx.run(UPDATE_DELIVERY, delivery_params(done))
            await tx.run(UPSERT_HEALTH, health_params(health))
            if event is not None:
                ids = {"submission_id": row["submission_id"], "job_id": row["job_id"]}
                await insert_event(tx, rules.build_event(event, now=now, **ids))
            return done

        return await self._db.write(body)

    async def get_event(self, event_id: str) -> Event | None:
        row = await self._db.fetch_one("SELECT * FROM events WHERE id = %s", (event_id,))
        return None if row is None else event_from_row(row)

    async def list_events(
        self,
        *,
        since: float | None = None,
        undelivered: bool = False,
        limit: int = 1000,
        newest_first: bool = False,
        after: str | None = None,
    ) -> list[Event]:
        where: list[str] = ["TRUE"]
        params: list[object] = []
        order, before = ("DESC", "<") if newest_first else ("ASC", ">")
        if after is not None:
            where.append(f"seq {before} (SELECT seq FROM events WHERE id = %s)")  # noqa: S608
            params.append(after)
        if since is not None:
            where.append("created_at >= %s")
            params.append(since)
        if undelivered:
            where.append(_UNDELIVERED_SEQS)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT %s"  # noqa: S608
        rows = await self._db.fetch(sql, (*params, max(0, limit)))
        return [event_from_row(r) for r in rows]

    async def deliveries_for(self, event_id: str) -> list[Delivery]:
        rows = await self._db.fetch(
            f"{_DELIVERY_SELECT} WHERE d.event_id = %s ORDER BY d.endpoint", (event_id,)
        )
        return [delivery_from_row(r) for r in rows]

    async def replay(
        self, *, event_ids: Sequence[str] = (), since: float | None = None, now: float
    ) -> int:
        async def body(tx: Tx) -> int:
            rows = await tx.rows(
                "SELECT id FROM events WHERE id = ANY(%s) OR created_at >= %s",
                (list(event_ids), since),
            )
            ids = [r["id"] for r in rows]
            await tx.run("DELETE FROM deliveries WHERE event_id = ANY(%s)", (ids,))
            await tx.run("UPDATE events SET fanned_out_at = NULL WHERE id = ANY(%s)", (ids,))
            return len(ids)

        return await self._db.write(body)

    async def disable_endpoint(self, name: str, reason: str, *, now: float) -> None:
        async def body(tx: Tx) -> None:
            await tx.run(_DISABLE, {"name": name, "now": now, "reason": reason})
            await tx.run(
                "UPDATE deliveries SET state = %s WHERE endpoint = %s AND state = %s",
                (DeliveryState.DROPPED, name, DeliveryState.PENDING),
            )

        await self._db.write(body)

    async def enable_endpoint(self, name: str) -> None:
        async def body(tx: Tx) -> None:
            await tx.run(
                "UPDATE endpoints SET disabled_at = NULL, disabled_reason = NULL, "
                "consecutive_failures = 0 WHERE name = %s",
                (name,),
            )

        await self._db.write(body)

    async def endpoint_health(self) -> list[EndpointHealth]:
        return [health_from_row(r) for r in await self._db.fetch(_HEALTH)]
