"""HTTP policy towards providers, as data and pure functions (no I/O).

``classify`` decides retry/raise/absorb for one failed attempt of an operation; ``retry_delay``
computes jittered exponential backoff with ``Retry-After`` as a capped floor;
``error_for_status``/``error_for_exception`` map HTTP statuses and aiohttp/asyncio/OS exceptions
into ``batchd.errors``; ``provider_message`` extracts the provider's words from any documented
error body shape; ``RateLimiter`` spaces requests. ``batchd.providers.http`` applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final

import aiohttp

from batchd.errors import (
    AuthError,
    NotFound,
    ProviderError,
    ProviderPermanent,
    ProviderTransient,
    RateLimited,
)
from batchd.providers.base import ProviderSettings

# ---------------------------------------------------------------------------- policy as data

RETRYABLE_STATUSES: Final = frozenset({408, 425, 429}) | frozenset(range(500, 600))
AUTH_STATUSES: Final = frozenset({401, 403})
NON_IDEMPOTENT: Final = frozenset({"upload_file", "create_job"})
GONE_IS_DONE: Final = frozenset({"delete_job", "delete_file"})
MESSAGE_MAX_CHARS: Final = 300
BODY_MAX_CHARS: Final = 2000


class Verdict(StrEnum):
    RETRY = "retry"  # sleep ``retry_delay`` and send again
    RAISE = "raise"  # give the error to the caller
    ABSORB = "absorb"  # the operation is done after all (a retried delete found nothing)


def classify(op: str, error: ProviderError, attempt: int, max_retries: int) -> Verdict:
    """What to do after ``error`` on 0-based ``attempt`` of operation ``op``."""
    if attempt > 0 and op in GONE_IS_DONE and isinstance(error, NotFound):
        return Verdict.ABSORB
    if op in NON_IDEMPOTENT or not isinstance(error, ProviderTransient):
        return Verdict.RAISE
    return Verdict.RETRY if attempt < max_retries else Verdict.RAISE


def retry_delay(
    attempt: int, retry_after_s: float | None, settings: ProviderSettings, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential backoff with "equal
    jitter" (half fixed, half random), capped at ``retry_max_s``; a server ``Retry-After`` is a
    floor, itself capped at ``retry_after_max_s``."""
    ceiling = min(settings.retry_max_s, settings.retry_base_s * 2.0 ** min(attempt, 30))
    backoff = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is None:
        return backoff
    return max(backoff, min(max(retry_after_s, 0.0), settings.retry_after_max_s))


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` (delta seconds or an HTTP date) or ``retry-after-ms``; None if absent or
    unreadable. Never negative; ``ProviderHttp`` caps it at ``retry_after_max_s`` before it
    goes on an error (callers pause a whole provider on it), and ``retry_delay`` caps it too."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value_ms = float(millis)
            if math.isfinite(value_ms):
                return max(value_ms / 1000.0, 0.0)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def error_for_status(
    status: int,
    message: str,
    *,
    where: str = "",
    body: str | None = None,
    retry_after_s: float | None = None,
) -> ProviderError:
    """The batchd error for a non-2xx status. A retryable status that carries a Retry-After
    (429, or a 503 saying when to come back) is ``RateLimited`` so the delay travels with it."""
    text = f"{where}: HTTP {status}: {message}" if where else f"HTTP {status}: {message}"
    if status in RETRYABLE_STATUSES and (status == 429 or retry_after_s is not None):
        return RateLimited(text, retry_after_s=retry_after_s, status=status, body=body)
    if status in RETRYABLE_STATUSES:
        return ProviderTransient(text, status=status, body=body)
    if status in AUTH_STATUSES:
        return AuthError(text, status=status, body=body)
    if status == 404:
        return NotFound(text, status=status, body=body)
    if 300 <= status < 400:
        return ProviderPermanent(
            f"{where or 'request'}: unexpected redirect HTTP {status}", status=status, body=body
        )
    return ProviderPermanent(text, status=status, body=body)


def error_for_exception(exc: BaseException, where: str = "") -> ProviderError:
    """The batchd error for an exception raised by aiohttp, asyncio or the OS while talking."""
    prefix = f"{where}: " if where else ""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ProviderPermanent(f"{prefix}invalid provider URL ({name})")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderTransient(f"{prefix}response body truncated ({name})")
    if isinstance(exc, TimeoutError):
        return ProviderTransient(f"{prefix}timed out ({name})")
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status >= 300:
        return error_for_status(exc.status, one_line(exc.message or name), where=where)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderTransient(f"{prefix}connection failed ({name}: {one_line(str(exc))})")
    return ProviderTransient(f"{prefix}request failed ({name})")


# ---------------------------------------------------------------------------- error bodies


def provider_message(raw: bytes, content_type: str, reason: str = "") -> str:
    """One line naming what the provider said, from any documented error body shape:
    ``{"message": str}``, ``{"detail": str}``, ``{"detail": [ValidationError...]}``,
    ``{"object": "error", "message": str | {"detail": [...]}}``, ``{"error": {...}}`` or text."""
    text = raw.decode("utf-8", "replace").strip()
    if "html" in content_type.lower():
        return reason or "unexpected HTML page"
    try:
        found = _message_in(json.loads(text)) if text else None
    except (ValueError, RecursionError):
        found = None
    return one_line(found or text or reason or "no message")


def _message_in(value: Any, depth: int = 0) -> str | None:
    if depth > 4:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [_validation_item(item) for item in value]
        return "; ".join(p for p in parts if p) or None
    if isinstance(value, dict):
        for key in ("message", "detail", "error", "msg"):
            if key in value and (found := _message_in(value[key], depth + 1)):
                return found
    return None


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    msg = str(item.get("msg") or item.get("message") or "")
    loc = item.get("loc")
    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
    return f"{where}: {msg}" if where else msg


def one_line(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


# ---------------------------------------------------------------------------- rate limit


def next_slot(now: float, next_free: float, interval_s: float) -> tuple[float, float]:
    """Spacing limiter: the time this request may go and the next free slot after it."""
    slot = max(now, next_free)
    return slot, slot + interval_s


class RateLimiter:
    """At most ``rate_per_s`` requests per second, evenly spaced, shared by all callers.
    A rate <= 0 disables it."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next_free = 0.0

    async def acquire(self) -> None:
        if self.interval_s <= 0:
            return
        now = self._monotonic()
        slot, self._next_free = next_slot(now, self._next_free, self.interval_s)
        if slot > now:
            await self._sleep(slot - now)
