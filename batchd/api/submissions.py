"""``/v1/submissions``: list (cursor pages), one, its results and errors (streamed), cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import web

from batchd.api.auth import Principal
from batchd.api.context import CTX, PRINCIPAL, ApiContext
from batchd.api.problems import Problem
from batchd.models import Submission, SubmissionState
from batchd.store.base import EventSpec
from batchd.views import submission_detail, submission_row

MAX_LIMIT: Final = 1000
JSONL: Final = "application/jsonl"
CANCELLABLE: Final = frozenset({SubmissionState.CLAIMED, SubmissionState.ACTIVE})


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem(400, f"query parameter {name}: an integer from {low} to {high}")
    return int(raw)


def states_param(request: web.Request) -> list[SubmissionState] | None:
    raw = request.query.getall("state", [])
    known = {s.value for s in SubmissionState}
    bad = [s for s in raw if s not in known]
    if bad:
        raise Problem(400, f"query parameter state: {bad[0]!r} is not one of {sorted(known)}")
    return [SubmissionState(s) for s in raw] or None


async def list_submissions(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    route = request.query.get("route")
    cursor = request.query.get("cursor") or None
    states = states_param(request)
    if cursor and await ctx.store.get_submission(cursor) is None:
        raise Problem(400, f"query parameter cursor: no submission {cursor}")
    items: list[dict[str, Any]] = []
    after, more = cursor, True
    while more and len(items) < limit:
        page = await ctx.store.list_submissions(
            states=states, route=route, limit=limit, after=after
        )
        more = len(page) == limit
        for sub in page:
            after = sub.id
            if who.sees(sub.route):
                items.append(submission_row(sub, await ctx.store.jobs_for_submission(sub.id)))
                if len(items) == limit:
                    break
    # a full page offers a cursor (the next page may be empty)
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


async def get_submission(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    sub = await ctx.visible(request[PRINCIPAL], request.match_info["id"])
    view = submission_detail(sub, await ctx.store.jobs_for_submission(sub.id))
    view["owner"] = ctx.owner_of(sub)
    return web.json_response(view)


async def _result_file(request: web.Request, name: str) -> web.StreamResponse:
    ctx = request.app[CTX]
    sub = await ctx.visible(request[PRINCIPAL], request.match_info["id"])
    if sub.state is not SubmissionState.DONE or not sub.results_dir:
        raise Problem(404, f"submission {sub.id} is {sub.state.value}: no results yet")
    path = Path(sub.results_dir) / name
    if not path.is_file():
        raise Problem(404, f"submission {sub.id} has no {name} (moved or pruned)")
    return web.FileResponse(path, headers={"Content-Type": JSONL})


async def get_results(request: web.Request) -> web.StreamResponse:
    return await _result_file(request, "results.jsonl")


async def get_errors(request: web.Request) -> web.StreamResponse:
    return await _result_file(request, "errors.jsonl")


async def cancel(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    sub = await request_cancel(ctx, request[PRINCIPAL], request.match_info["id"])
    view = submission_row(sub, await ctx.store.jobs_for_submission(sub.id))
    return web.json_response(view, status=202)


async def request_cancel(ctx: ApiContext, who: Principal, submission_id: str) -> Submission:
    """Record the cancel (the owner, or admin), as ``batchd cancel`` does; wake the tracker."""
    sub = await ctx.visible(who, submission_id)
    if not who.may_cancel(sub.route, ctx.owner_of(sub)):
        raise Problem(403, f"{who.name} may not cancel {sub.id} (not its owner)")
    if sub.state not in CANCELLABLE:
        raise Problem(409, f"submission {sub.id} is {sub.state.value}: nothing to cancel")
    event = EventSpec(
        "submission.cancel_requested",
        {"submission_id": sub.id, "route": sub.route, "name": sub.name},
    )
    sub = await ctx.store.request_cancel(sub.id, now=ctx.clock.now(), event=event)
    ctx.wake_tracker()
    return sub


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/submissions", list_submissions)
    app.router.add_get("/v1/submissions/{id}", get_submission)
    app.router.add_get("/v1/submissions/{id}/results", get_results)
    app.router.add_get("/v1/submissions/{id}/errors", get_errors)
    app.router.add_post("/v1/submissions/{id}/cancel", cancel)
