"""``GET /`` and its pages: the dashboard, server-rendered from the store (``dashboard_html``).

Read-only, except cancel (for those allowed, as over the API) and the submission page, which
posts a file through the same path as ``POST /v1/submissions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import BodyPartReader, web

from batchd.api import dashboard_html as h
from batchd.api.auth import Principal
from batchd.api.context import CTX, PRINCIPAL, ApiContext
from batchd.api.problems import Problem
from batchd.api.submissions import request_cancel
from batchd.api.uploads import CHUNK_BYTES, accept, route_for, write_part
from batchd.metrics import REGISTRY
from batchd.models import SUBMISSION_OPEN, Submission, SubmissionState
from batchd.spool import name_allowed
from batchd.views import iso, submission_detail, submission_row

OPEN_SHOWN: Final = 500
FINISHED_SHOWN: Final = 20
EVENTS_SHOWN: Final = 20
FINISHED: Final = [SubmissionState.DONE, SubmissionState.REJECTED, SubmissionState.ABANDONED]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


async def _rows(ctx: ApiContext, who: Principal, subs: list[Submission]) -> list[dict[str, Any]]:
    rows = []
    for sub in subs:
        if who.sees(sub.route):
            row = submission_row(sub, await ctx.store.jobs_for_submission(sub.id))
            row["elapsed_s"] = ctx.clock.now() - (sub.accepted_at or sub.created_at)
            row["can_cancel"] = who.may_cancel(sub.route, ctx.owner_of(sub))
            rows.append(row)
    return rows


async def overview(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    store = ctx.store
    open_subs = await store.list_submissions(states=sorted(SUBMISSION_OPEN), limit=OPEN_SHOWN)
    done = await store.list_submissions(states=FINISHED, limit=FINISHED_SHOWN)
    opened = [
        h.open_row(r, r["elapsed_s"], can_cancel=r["can_cancel"])
        for r in await _rows(ctx, who, open_subs)
    ]
    finished = [h.finished_row(r) for r in await _rows(ctx, who, done)]
    body = "".join(
        [
            "<h2>Open submissions</h2>",
            h.table(
                ["name", "route", "state", "progress", "failed", "rate", "ETA", "created", ""],
                opened,
                empty="Nothing open.",
                attrs=' id="open"',
            ),
            "<h2>Recently finished</h2>",
            h.table(
                ["name", "route", "outcome", "answered", "failed", "finished", ""],
                finished,
                empty="Nothing finished yet.",
                attrs=' id="finished"',
            ),
            await _health(ctx, who),
            await _events(ctx, who),
        ]
    )
    return _html(h.page("Overview", body))


async def _health(ctx: ApiContext, who: Principal) -> str:
    if who.routes is not None:
        return ""
    now = ctx.clock.now()
    providers = sorted({r.provider for r in ctx.settings.routes})
    rows = [
        h.provider_row(
            name,
            iso(ctx.gate.open_at(name)) if not ctx.gate.is_open(name, now) else None,
            REGISTRY.get_sample_value("batchd_provider_rate_limited_total", {"provider": name})
            or 0.0,
            (ctx.gate.last_error or "") if (ctx.gate.last_error or "").startswith(name) else "",
        )
        for name in providers
    ]
    hooks = [
        f"<tr><td>{h.e(x.name)}</td><td class='num'>{x.pending}</td><td class='num'>{x.dead}</td>"
        f"<td>{'disabled: ' + h.e(x.disabled_reason) if x.disabled_at else 'enabled'}</td></tr>"
        for x in await ctx.store.endpoint_health()
    ]
    return (
        "<h2>Providers</h2>"
        + h.table(["provider", "status", "429s", "last error"], rows, empty="No provider.")
        + "<h2>Webhooks</h2>"
        + h.table(["endpoint", "backlog", "dead letters", ""], hooks, empty="No webhook.")
    )


async def _events(ctx: ApiContext, who: Principal, submission_id: str | None = None) -> str:
    from batchd.api.events import RouteCache, event_view

    cache, rows = RouteCache(ctx), []
    for event in await ctx.store.list_events(limit=1000, newest_first=True):
        if submission_id is not None and event.submission_id != submission_id:
            continue
        if await cache.allowed(who, event):
            rows.append(h.event_row(event_view(event)))
            if len(rows) == EVENTS_SHOWN:
                break
    return "<h2>Recent events</h2>" + h.table(
        ["time", "type", "submission", "data"], rows, empty="No events.", attrs=' id="events"'
    )


async def submission_page(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    sub = await ctx.visible(who, request.match_info["id"])
    (row,) = await _rows(ctx, who, [sub])
    view = submission_detail(sub, await ctx.store.jobs_for_submission(sub.id))
    rate, eta = h.rate_eta(row, row["elapsed_s"])
    facts = [
        ("state", h.shown_state(row)),
        ("route", sub.route),
        ("progress", f"{row['completed'] or 0}/{row['requests'] or 0}"),
        ("failed", row["failed"]),
        ("rate", rate),
        ("ETA", eta),
        ("model", sub.model),
        ("created", view["created"]),
        ("accepted", view["accepted"]),
        ("finished", view["finished"]),
        ("reason", sub.reason),
        ("owner", ctx.owner_of(sub)),
    ]
    is_open = sub.state in SUBMISSION_OPEN
    marker = " data-open" if is_open else ""
    items = "".join(f"<tr><th>{h.e(k)}</th><td>{h.e(v)}</td></tr>" for k, v in facts)
    action = h.cancel_form(sub.id) if is_open and row["can_cancel"] else ""
    if row["cancel_requested"]:
        action = '<p class="muted">Cancel requested.</p>'
    if sub.state is SubmissionState.DONE:
        base = f"/v1/submissions/{h.e(sub.id)}"
        action += (
            f'<p><a href="{base}/results">results</a> · <a href="{base}/errors">errors</a></p>'
        )
    jobs = h.table(
        [
            "chunk",
            "job",
            "provider job",
            "state",
            "answered",
            "failed",
            "results",
            "created",
            "started",
            "ended",
            "last error",
        ],
        [h.job_row(j) for j in view["jobs"]],
        empty="No jobs yet.",
    )
    body = (
        f'<h2 id="title"{marker}>{h.e(sub.name)}</h2><table id="facts">{items}</table>{action}'
        f"<h2>Jobs</h2>{jobs}{await _events(ctx, who, sub.id)}"
    )
    return _html(h.page(sub.name, body))


async def cancel_from_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    sub = await request_cancel(ctx, request[PRINCIPAL], request.match_info["id"])
    raise web.HTTPSeeOther(f"/submissions/{sub.id}")


async def submit_page(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    routes = [r.name for r in ctx.settings.routes if who.sees(r.name)]
    return _html(h.page("Submit", h.submit_form(routes)))


async def submit_from_page(request: web.Request) -> web.Response:
    """The form's file, streamed like ``POST /v1/submissions``; then its page (303)."""
    ctx, who = request.app[CTX], request[PRINCIPAL]
    reader = await request.multipart()
    fields: dict[str, str] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            return await _submit_file(ctx, who, fields, part)
        fields[part.name or ""] = (await part.text())[:256]
    raise Problem(400, "the form has no file")


async def _submit_file(
    ctx: ApiContext, who: Principal, fields: dict[str, str], part: BodyPartReader
) -> web.Response:
    route = route_for(ctx, who, fields.get("route") or None)
    name = fields.get("name") or Path(part.filename or "").name
    if not name_allowed(name):
        raise Problem(400, f"{name!r}: names are [A-Za-z0-9._-] and end in .jsonl")
    if ctx.uploads.locked():
        raise Problem(429, "too many uploads at once; try again shortly")

    async def chunks() -> Any:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            yield chunk

    limit = ctx.settings.api.max_upload_bytes
    async with ctx.uploads:
        sub = await accept(
            ctx,
            lambda path: write_part(chunks(), path, limit),
            who=who,
            route=route,
            name=name,
            given=None,
            key=None,
        )
    raise web.HTTPSeeOther(f"/submissions/{sub.id}" if sub else "/")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/submissions/{id}", submission_page)
    app.router.add_post("/submissions/{id}/cancel", cancel_from_page)
    app.router.add_get("/submit", submit_page)
    app.router.add_post("/submit", submit_from_page)
