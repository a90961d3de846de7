"""Prometheus metrics: the counters and histograms the loops feed as things happen.

Everything here lives in one registry (``REGISTRY``, not the library's global one) and is
served by ``GET /metrics`` together with the gauges read from the store at scrape time
(``metrics_store.py``). Names carry their unit and counters end in ``_total``; every label has a
bounded set of values (providers, routes, operations, endpoints, outcomes, status codes: never a
job or submission id). The loops call the small functions below, never the library directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)

PROVIDER_REQUESTS: Final = Counter(
    "batchd_provider_requests_total",
    "HTTP requests sent to a provider, by operation and status code ('error': no answer)",
    ["provider", "operation", "code"],
    registry=REGISTRY,
)
PROVIDER_LATENCY: Final = Histogram(
    "batchd_provider_request_duration_seconds",
    "Time from sending a provider request to its answer",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
PROVIDER_RATE_LIMITED: Final = Counter(
    "batchd_provider_rate_limited_total",
    "Provider answers 429 (rate limited)",
    ["provider"],
    registry=REGISTRY,
)
PROVIDER_RETRIES: Final = Counter(
    "batchd_provider_retries_total",
    "Provider requests sent again after a transient error",
    ["provider", "operation"],
    registry=REGISTRY,
)
DOWNLOADED: Final = Counter(
    "batchd_download_bytes_total",
    "Result bytes downloaded from a provider",
    ["provider"],
    registry=REGISTRY,
)
DETECTION: Final = Histogram(
    "batchd_detection_latency_seconds",
    "From a provider job's end (as the provider reports it) to batchd noticing it",
    ["provider"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
REQUESTS: Final = Counter(
    "batchd_requests_total",
    "Requests of finished submissions, by how they ended (succeeded, failed, missing)",
    ["route", "outcome"],
    registry=REGISTRY,
)
SUBMISSIONS_FINISHED: Final = Counter(
    "batchd_submissions_finished_total",
    "Submissions finished, by outcome",
    ["route", "outcome"],
    registry=REGISTRY,
)
TOKENS: Final = Counter(
    "batchd_tokens_total",
    "Tokens used by the answered requests of finished submissions (direction: in, out)",
    ["route", "direction"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES: Final = Counter(
    "batchd_webhook_deliveries_total",
    "Webhook delivery attempts, by endpoint and result (delivered, retry, dead, dropped)",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
INTAKE_LAG: Final = Histogram(
    "batchd_intake_lag_seconds",
    "From a file's last change in the inbox to its claim",
    ["route"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
_TOKEN_KEYS: Final = {"prompt_tokens": "in", "completion_tokens": "out"}


def provider_answered(provider: str, operation: str, code: int | None, seconds: float) -> None:
    PROVIDER_REQUESTS.labels(provider, operation, str(code) if code else "error").inc()
    PROVIDER_LATENCY.labels(provider, operation).observe(max(0.0, seconds))
    if code == 429:
        PROVIDER_RATE_LIMITED.labels(provider).inc()


def provider_retried(provider: str, operation: str) -> None:
    PROVIDER_RETRIES.labels(provider, operation).inc()


def downloaded(provider: str, size_bytes: int) -> None:
    DOWNLOADED.labels(provider).inc(size_bytes)


def detected(provider: str, ended_at: float | None, now: float) -> None:
    if ended_at is not None and ended_at > 0:
        DETECTION.labels(provider).observe(max(0.0, now - ended_at))


def finished(
    route: str,
    outcome: str,
    *,
    succeeded: int,
    failed: int,
    missing: int,
    usage: Mapping[str, int],
) -> None:
    SUBMISSIONS_FINISHED.labels(route, outcome).inc()
    for label, count in (("succeeded", succeeded), ("failed", failed), ("missing", missing)):
        REQUESTS.labels(route, label).inc(count)
    for key, direction in _TOKEN_KEYS.items():
        TOKENS.labels(route, direction).inc(max(0, usage.get(key, 0)))


def delivery(endpoint: str, state: str, *, retrying: bool) -> None:
    WEBHOOK_DELIVERIES.labels(endpoint, "retry" if retrying else state).inc()


def claimed(route: str, lag_s: float) -> None:
    INTAKE_LAG.labels(route).observe(max(0.0, lag_s))
