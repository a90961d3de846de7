"""The one place for HTTP policy towards providers.

Retry policy is data plus pure functions (``classify``, ``retry_delay``, ``parse_retry_after``,
``error_for_status``, ``error_for_exception``); ``ProviderHttp`` is the thin effectful part: one
injected ``aiohttp.ClientSession`` (never created or closed here), a client-side rate limit
shared by every call of the provider, per-call timeouts, and streamed downloads.

Idempotency is explicit: ``NON_IDEMPOTENT`` operations (upload, create) are sent once and any
failure is raised to the caller, who reconciles through metadata. Cancel is retried (repeating
it leaves the same state); deletes are retried too, and a 404 on a retry of a delete means an
earlier, ambiguous attempt took effect (``GONE_IS_DONE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import aiohttp
import structlog
from yarl import URL

from batchd import __version__, metrics
from batchd.errors import BatchdError, ProviderError, ProviderTransient, RateLimited
from batchd.providers.base import ProviderSettings
from batchd.providers.http_policy import (
    BODY_MAX_CHARS,
    GONE_IS_DONE,
    NON_IDEMPOTENT,
    RETRYABLE_STATUSES,
    RateLimiter,
    Verdict,
    classify,
    error_for_exception,
    error_for_status,
    parse_retry_after,
    provider_message,
    retry_delay,
    scrub,
)

__all__ = [
    "GONE_IS_DONE",
    "NON_IDEMPOTENT",
    "RETRYABLE_STATUSES",
    "ProviderHttp",
    "RateLimiter",
    "Verdict",
    "classify",
    "encode_query",
    "retry_delay",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

ERROR_BODY_READ_BYTES: Final = 64 * 1024
DOWNLOAD_CHUNK_BYTES: Final = 1024 * 1024
SYNC_EVERY_BYTES: Final = 64 * 1024 * 1024
USER_AGENT: Final = f"batchd/{__version__}"


# ---------------------------------------------------------------------------- the client


def encode_query(pairs: Sequence[tuple[str, str]]) -> str:
    """Form-encode query pairs as the SDK puts them on the wire (``:`` -> ``%3A``, repeated
    keys kept in order)."""
    return urlencode(list(pairs))


class ProviderHttp:
    """HTTP to one provider account: retries for idempotent calls, rate limit, timeouts.

    ``calls`` counts requests sent per operation (every attempt), ``retries`` the retries."""

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.limiter = RateLimiter(settings.requests_per_second, sleep=sleep)
        self._session = session
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._call_timeout = aiohttp.ClientTimeout(
            total=settings.timeout_s, sock_connect=settings.connect_timeout_s
        )
        self._transfer_timeout = aiohttp.ClientTimeout(
            total=settings.download_timeout_s,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.timeout_s,
        )

    # ------------------------------------------------------------------ public calls
    async def call_json(
        self,
        op: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
    ) -> Any:
        """Send one JSON request (retried when ``op`` is idempotent); return the parsed body,
        or None when a retried delete found the target already gone."""

        def once() -> Awaitable[Any]:
            data = None if body is None else json.dumps(body).encode()
            return self._send_json(
                op, method, path, query=query, data=data, content_type="application/json"
            )

        return await self._with_retries(op, once)

    async def call_form(self, op: str, path: str, build: Callable[[], aiohttp.FormData]) -> Any:
        """POST a multipart form (an upload), streamed, under the transfer timeout; ``build`` is
        called per attempt (an upload is non-idempotent, so there is only one)."""
        return await self._with_retries(
            op, lambda: self._send_json(op, "POST", path, data=build(), transfer=True)
        )

    async def download(self, op: str, path: str, to_path: Path) -> int:
        """Stream ``path`` into ``to_path`` (temp file beside it, fsync, byte count checked
        against Content-Length, rename); a truncated transfer is retried from scratch."""
        size = await self._with_retries(op, lambda: self._download_once(op, path, to_path))
        assert size is not None  # a download is never absorbed
        return size

    # ------------------------------------------------------------------ retry loop
    async def _with_retries(self, op: str, once: Callable[[], Awaitable[T]]) -> T | None:
        attempt = 0
        while True:
            try:
                return await once()
            except ProviderError as err:
                verdict = classify(op, err, attempt, self.settings.read_retries)
                if verdict is Verdict.ABSORB:
                    return None
                if verdict is Verdict.RAISE:
                    raise
                await self._back_off(op, attempt, err)
            attempt += 1

    async def _back_off(self, op: str, attempt: int, err: ProviderError) -> None:
        retry_after = err.retry_after_s if isinstance(err, RateLimited) else None
        delay = retry_delay(attempt, retry_after, self.settings, self._rng)
        self.retries[op] += 1
        metrics.provider_retried(self.settings.name, op)
        log.info(
            "provider.retry",
            provider=self.settings.name,
            op=op,
            attempt=attempt + 1,
            delay_s=round(delay, 3),
            reason=err.message,
            status=err.status,
        )
        await self._sleep(delay)

    # ------------------------------------------------------------------ one attempt
    def _url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> URL:
        text = self.base_url + path + (f"?{encode_query(query)}" if query else "")
        return URL(text, encoded=True)

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        key = self.settings.api_key
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if key:
            headers["Authorization"] = f"Bearer {key.reveal()}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _start(self, op: str) -> None:
        await self.limiter.acquire()
        self.calls[op] += 1

    async def _send_json(
        self,
        op: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        data: bytes | aiohttp.FormData | None = None,
        content_type: str | None = None,
        transfer: bool = False,
    ) -> Any:
        await self._start(op)
        timeout = self._transfer_timeout if transfer else self._call_timeout
        where = f"{op} ({method} {path})"
        sent = time.monotonic()
        try:
            async with self._session.request(
                method,
                self._url(path, query),
                data=data,
                headers=self._headers("application/json", content_type if data else None),
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                metrics.provider_answered(self.settings.name, op, resp.status, _since(sent))
                return self._json_result(where, resp.status, resp.headers, raw, resp.reason)
        except ProviderError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.provider_answered(self.settings.name, op, None, _since(sent))
            raise error_for_exception(exc, where) from exc

    def _scrubbed(self, text: str) -> str:
        key = self.settings.api_key
        return scrub(text, key.reveal() if key else None)

    def _status_error(
        self, where: str, status: int, headers: Mapping[str, str], raw: bytes, reason: str | None
    ) -> ProviderError:
        ctype = headers.get("Content-Type", "")
        message = self._scrubbed(provider_message(raw, ctype, reason or ""))
        body = self._scrubbed(raw[:BODY_MAX_CHARS].decode("utf-8", "replace"))
        retry_after = parse_retry_after(headers, time.time())
        if retry_after is not None:  # callers pause the whole provider on it: never a day
            retry_after = min(retry_after, self.settings.retry_after_max_s)
        return error_for_status(status, message, where=where, body=body, retry_after_s=retry_after)

    def _json_result(
        self, where: str, status: int, headers: Mapping[str, str], raw: bytes, reason: str | None
    ) -> Any:
        if status >= 300:
            raise self._status_error(where, status, headers, raw, reason)
        ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise ProviderTransient(
                f"{where}: expected JSON, got {ctype or 'no content type'}", status=status
            )
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ProviderTransient(f"{where}: invalid JSON in response", status=status) from exc

    async def _download_once(self, op: str, path: str, to_path: Path) -> int:
        await self._start(op)
        where = f"{op} (GET {path})"
        tmp = to_path.with_name(f".{to_path.name}.{os.getpid()}.{self._rng.getrandbits(32):08x}")
        try:
            size = await self._stream(where, path, tmp)
            _replace_durably(tmp, to_path)
            metrics.downloaded(self.settings.name, size)
            return size
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise error_for_exception(exc, where) from exc
        except OSError as exc:  # local: disk full, permissions; not the provider's fault
            raise BatchdError(f"{where}: cannot write {to_path}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def _stream(self, where: str, path: str, tmp: Path) -> int:
        headers = self._headers("application/octet-stream", None)
        headers["Accept-Encoding"] = "identity"  # so that Content-Length counts what we write
        async with self._session.get(
            self._url(path), headers=headers, timeout=self._transfer_timeout, allow_redirects=False
        ) as resp:
            metrics.provider_answered(self.settings.name, "download", resp.status, 0.0)
            if resp.status >= 300:
                raw = await resp.content.read(ERROR_BODY_READ_BYTES)
                raise self._status_error(where, resp.status, resp.headers, raw, resp.reason)
            if "html" in resp.headers.get("Content-Type", "").lower():
                raise ProviderTransient(f"{where}: got an HTML page instead of file content")
            expected = _expected_length(resp.headers)
            size = await _write_stream(resp.content, tmp)
        if expected is not None and size != expected:
            raise ProviderTransient(f"{where}: truncated download ({size} of {expected} bytes)")
        return size


def _since(sent: float) -> float:
    return time.monotonic() - sent


def _expected_length(headers: Mapping[str, str]) -> int | None:
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    length = headers.get("Content-Length")
    if encoding not in {"", "identity"} or length is None or not length.strip().isdigit():
        return None
    return int(length)


async def _write_stream(content: aiohttp.StreamReader, tmp: Path) -> int:
    """Write the body to ``tmp`` and make it durable. Every ``SYNC_EVERY_BYTES`` a
    ``fdatasync`` starts on a thread while the download goes on, so that the disk writes
    alongside the network and the final ``fsync`` only has the tail left (measured: the final
    fsync of a 1 GiB file cost a fifth of the download; tests/benchmarks, download)."""
    size = since_sync = 0
    syncing: asyncio.Future[None] | None = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        try:
            async for chunk in content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                size += len(chunk)
                since_sync += len(chunk)
                if since_sync >= SYNC_EVERY_BYTES and (syncing is None or syncing.done()):
                    out.flush()
                    syncing = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, fd))
                    since_sync = 0
            out.flush()
        finally:
            if syncing is not None:
                await asyncio.shield(syncing)  # never close the file under a running sync
        await asyncio.to_thread(os.fsync, out.fileno())
    return size


def _replace_durably(tmp: Path, to_path: Path) -> None:
    os.replace(tmp, to_path)
    fd = os.open(to_path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
