"""``GET /metrics``: the loops' counters (``batchd.metrics.REGISTRY``) plus gauges read from the
store and the running loops at scrape time, in Prometheus' text format."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchd.api.context import CTX, PRINCIPAL, ApiContext
from batchd.api.problems import Problem
from batchd.metrics import REGISTRY
from batchd.models import ACTIVE, LOCAL, SUBMISSION_OPEN

OPEN_LIMIT = 10_000_000


@dataclass
class Snapshot:
    """What the store and the loops say now."""

    submissions: Counter[tuple[str, str]] = field(default_factory=Counter)  # route, state
    jobs: Counter[tuple[str, str]] = field(default_factory=Counter)  # provider, state
    results_pending: Counter[str] = field(default_factory=Counter)  # provider
    undelivered_events: int = 0
    oldest_undelivered_s: float = 0.0
    endpoints: list[tuple[str, int, int, bool]] = field(default_factory=list)
    heartbeats: dict[str, float] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)


async def snapshot(ctx: ApiContext) -> Snapshot:
    store, now = ctx.store, ctx.clock.now()
    snap = Snapshot()
    for route in ctx.settings.routes:  # every route and state shows, at 0 when empty
        for state in SUBMISSION_OPEN:
            snap.submissions[(route.name, state.value)] = 0
    subs = await store.list_submissions(states=sorted(SUBMISSION_OPEN), limit=OPEN_LIMIT)
    snap.submissions.update((s.route, s.state.value) for s in subs)
    for job in await store.list_jobs(states=sorted(LOCAL | ACTIVE)):
        snap.jobs[(job.provider, job.state.value)] += 1
    for job in await store.list_jobs(result_pending=True):
        snap.results_pending[job.provider] += 1
    snap.undelivered_events = (await store.stats()).undelivered_events
    oldest = await store.list_events(undelivered=True, limit=1)
    snap.oldest_undelivered_s = max(0.0, now - oldest[0].created_at) if oldest else 0.0
    snap.endpoints = [
        (h.name, h.pending, h.dead, h.disabled_at is not None)
        for h in await store.endpoint_health()
    ]
    beats = ctx.heartbeats
    snap.heartbeats = {n: beats.age(n, time.monotonic()) for n in beats.names}
    snap.paused = {p: not ctx.gate.is_open(p, now) for p in sorted(_providers(ctx))}
    return snap


def _providers(ctx: ApiContext) -> set[str]:
    return {r.provider for r in ctx.settings.routes}


class SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self._snap
        yield _gauge(
            "batchd_submissions",
            "Open submissions by route and state",
            ["route", "state"],
            {k: float(v) for k, v in s.submissions.items()},
        )
        yield _gauge(
            "batchd_jobs",
            "Provider jobs not yet ended, by provider and state",
            ["provider", "state"],
            {k: float(v) for k, v in s.jobs.items()},
        )
        yield _gauge(
            "batchd_jobs_results_pending",
            "Ended jobs whose results are not collected yet",
            ["provider"],
            {(k,): float(v) for k, v in s.results_pending.items()},
        )
        yield _gauge(
            "batchd_events_undelivered",
            "Events not yet fanned out or delivered",
            [],
            {(): float(s.undelivered_events)},
        )
        yield _gauge(
            "batchd_events_oldest_undelivered_age_seconds",
            "Age of the oldest event still to deliver (0: none)",
            [],
            {(): s.oldest_undelivered_s},
        )
        yield _gauge(
            "batchd_webhook_backlog",
            "Webhook deliveries waiting, by endpoint",
            ["endpoint"],
            {(n,): float(p) for n, p, _, _ in s.endpoints},
        )
        yield _gauge(
            "batchd_webhook_dead_letters",
            "Webhook deliveries given up, by endpoint",
            ["endpoint"],
            {(n,): float(d) for n, _, d, _ in s.endpoints},
        )
        yield _gauge(
            "batchd_loop_heartbeat_age_seconds",
            "Since each loop last beat",
            ["loop"],
            {(n,): a for n, a in s.heartbeats.items()},
        )
        yield _gauge(
            "batchd_provider_paused",
            "1 while a provider is paused or slowed down",
            ["provider"],
            {(p,): float(v) for p, v in s.paused.items()},
        )


def _gauge(
    name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def render(snap: Snapshot) -> bytes:
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(SnapshotCollector(snap))
    return generate_latest(scrape) + generate_latest(REGISTRY)


async def serve(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    if who.routes is not None:  # the figures cover every route
        raise Problem(403, f"{who.name} sees only some routes; /metrics covers all of them")
    body = render(await snapshot(ctx))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", serve)
