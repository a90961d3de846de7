"""One webhook attempt: sign, POST (never following a redirect), classify. Never raises.

Sessions come from ``make_session``: an endpoint that does not allow private addresses gets a
connector whose resolver drops non-global addresses and whose socket factory refuses to
connect to one (``urls.py``); an endpoint that allows them gets a plain connector. Neither
session carries cookies, reads proxy settings from the environment or decompresses responses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from batchd.clock import utc_iso
from batchd.errors import WebhookError
from batchd.models import new_id
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.schedule import AttemptOutcome, classify, parse_retry_after
from batchd.webhooks.signing import build_headers, parse_secret
from batchd.webhooks.urls import AddressNotAllowed, SafeResolver, check_url, guarded_socket_factory

READ_CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: AttemptOutcome
    status: int | None
    error: str | None  # a short description (never headers, bodies or secrets)
    retry_after_s: float | None
    duration_s: float
    timestamp: int  # the webhook-timestamp this attempt carried
    response_bytes: int = 0  # how much of the response body was read (at most the cap)


def make_session(
    *, allow_private: bool, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A client session for webhook deliveries under one address policy.

    ``resolver`` replaces aiohttp's default name resolution (tests map names to addresses with
    it); for endpoints that do not allow private addresses it is wrapped in ``SafeResolver``."""
    # No pool-wide connection limit: each endpoint's own bound (the notifier's max_concurrency)
    # is the only one, so a slow endpoint cannot use up connections the others need.
    if allow_private:
        connector = aiohttp.TCPConnector(resolver=resolver, limit=0)
    else:
        connector = aiohttp.TCPConnector(
            resolver=SafeResolver(resolver), socket_factory=guarded_socket_factory(), limit=0
        )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
    )


async def deliver(
    session: aiohttp.ClientSession,
    endpoint: WebhookEndpoint,
    *,
    event_id: str,
    payload: bytes,
    now: float,
) -> AttemptResult:
    """POST ``payload`` (the exact stored bytes) to ``endpoint``, signed for this attempt."""
    started = time.monotonic()
    timestamp = int(now)
    try:
        check_url(
            endpoint.url, allow_http=endpoint.allow_http, allow_private=endpoint.allow_private
        )
        keys = [parse_secret(secret.reveal()) for secret in endpoint.secrets]
        headers = build_headers(keys, event_id, timestamp, payload)
    except Exception as exc:  # refused (WebhookError: no retry), or a bug (retried, counted)
        return _failure(exc, started, timestamp)
    try:
        async with session.post(
            endpoint.url,
            data=payload,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=endpoint.timeout_s),
        ) as response:
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
            size = await _read_capped(response, endpoint.max_response_bytes)
    except Exception as exc:  # every failure is an attempt that counts: never retried forever
        return _failure(exc, started, timestamp)
    return AttemptResult(
        outcome=classify(status, None),
        status=status,
        error=None if 200 <= status < 300 else f"HTTP {status}",
        retry_after_s=retry_after,
        duration_s=time.monotonic() - started,
        timestamp=timestamp,
        response_bytes=size,
    )


async def _read_capped(response: aiohttp.ClientResponse, cap_bytes: int) -> int:
    """Read and discard at most ``cap_bytes`` of the body, then stop (closing the connection if
    more was coming). The status line decides the outcome, so a failing body read is ignored."""
    total = 0
    try:
        while total < cap_bytes:
            chunk = await response.content.read(min(READ_CHUNK_BYTES, cap_bytes - total))
            if not chunk:
                return total
            total += len(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError):
        response.close()
        return total
    if not response.content.at_eof():
        response.close()
    return total


def _failure(exc: BaseException, started: float, timestamp: int) -> AttemptResult:
    return AttemptResult(
        outcome=classify(None, exc),
        status=None,
        error=describe_error(exc),
        retry_after_s=None,
        duration_s=time.monotonic() - started,
        timestamp=timestamp,
    )


def describe_error(exc: BaseException) -> str:
    """A short, header-free description of why an attempt got no status."""
    if isinstance(exc, WebhookError):
        return f"refused: {exc}"
    refused = _address_refusal(exc)
    if refused is not None:
        return f"refused: {refused}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _address_refusal(exc: BaseException) -> AddressNotAllowed | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressNotAllowed):
            return seen
        nested = getattr(seen, "os_error", None)
        if isinstance(nested, AddressNotAllowed):
            return nested
        seen = seen.__cause__
    return None


def canonical_payload(event_type: str, timestamp: float, data: Mapping[str, Any]) -> bytes:
    """``{type, timestamp, data}`` as compact, key-sorted JSON (for events built outside the
    store, such as ``webhook.test``)."""
    body = {"type": event_type, "timestamp": utc_iso(timestamp), "data": dict(data)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


async def send_test(
    session: aiohttp.ClientSession, endpoint: WebhookEndpoint, *, now: float
) -> tuple[str, AttemptResult]:
    """Send one signed ``webhook.test`` event directly (not through the outbox)."""
    event_id = new_id("evt", now)
    payload = canonical_payload("webhook.test", now, {"endpoint": endpoint.name})
    return event_id, await deliver(session, endpoint, event_id=event_id, payload=payload, now=now)
