"""``/v1/events``: the outbox, oldest first, in cursor pages, and live as Server-Sent Events.

A caller who sees only some routes gets the events of their submissions (events of no
submission, such as a provider's pause, go to those who see every route)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from aiohttp import web

from batchd.api.auth import Principal
from batchd.api.context import CTX, PRINCIPAL, ApiContext
from batchd.api.problems import Problem
from batchd.api.submissions import int_param
from batchd.models import Event
from batchd.views import iso

SSE_POLL_S: Final = 0.5
SSE_KEEPALIVE_S: Final = 15.0
SSE_BATCH: Final = 500


def event_view(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "created": iso(event.created_at),
        "submission_id": event.submission_id,
        "job_id": event.job_id,
        "data": event.data,
    }


class RouteCache:
    """Which route a submission is on, asked of the store once per submission."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        self._routes: dict[str, str | None] = {}

    async def allowed(self, who: Principal, event: Event) -> bool:
        if who.routes is None:
            return True
        if event.submission_id is None:
            return False
        if event.submission_id not in self._routes:
            sub = await self._ctx.store.get_submission(event.submission_id)
            self._routes[event.submission_id] = sub.route if sub else None
        route = self._routes[event.submission_id]
        return route is not None and who.sees(route)


async def _check_cursor(ctx: ApiContext, cursor: str | None) -> None:
    if cursor and await ctx.store.get_event(cursor) is None:
        raise Problem(400, f"cursor: no event {cursor} (pruned, or never existed)")


async def list_events(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    limit = int_param(request, "limit", 100, 1, 1000)
    cursor = request.query.get("cursor") or None
    await _check_cursor(ctx, cursor)
    cache, items = RouteCache(ctx), list[dict[str, Any]]()
    after, more = cursor, True
    while more and len(items) < limit:
        page = await ctx.store.list_events(limit=limit, after=after)
        more = len(page) == limit
        for event in page:
            after = event.id
            if await cache.allowed(who, event):
                items.append(event_view(event))
                if len(items) == limit:
                    break
    next_cursor = items[-1]["id"] if items else cursor
    return web.json_response({"items": items, "next_cursor": next_cursor})


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Every event after ``cursor`` (or ``Last-Event-ID``; neither: from now on), as they come."""
    ctx, who = request.app[CTX], request[PRINCIPAL]
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor") or None
    await _check_cursor(ctx, cursor)
    if cursor is None:
        newest = await ctx.store.list_events(limit=1, newest_first=True)
        cursor = newest[0].id if newest else None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b": batchd events\n\n")
    await _pump(ctx, who, response, cursor)
    return response


async def _pump(
    ctx: ApiContext, who: Principal, response: web.StreamResponse, cursor: str | None
) -> None:
    cache, quiet = RouteCache(ctx), 0.0
    while True:
        if cursor is None:  # no event yet: start at the first one
            page = await ctx.store.list_events(limit=SSE_BATCH)
        else:
            page = await ctx.store.list_events(limit=SSE_BATCH, after=cursor)
        for event in page:
            cursor = event.id
            if await cache.allowed(who, event):
                data = json.dumps(event_view(event))
                await response.write(
                    f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()
                )
                quiet = 0.0
        if len(page) == SSE_BATCH:
            continue
        await asyncio.sleep(SSE_POLL_S)
        quiet += SSE_POLL_S
        if quiet >= SSE_KEEPALIVE_S:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/v1/events/stream", stream_events)
