"""HTTP to one Anthropic account: ``ProviderHttp``'s policy (retries for idempotent calls, rate
limit, timeouts, error mapping, durable downloads) with Anthropic's headers (``x-api-key`` and
``anthropic-version``, no ``Authorization``) and a create body streamed from disk with its
``Content-Length`` known in advance (sent once, like every create)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import aiohttp
from yarl import URL

from batchd.errors import ProviderError
from batchd.providers.http import ProviderHttp
from batchd.providers.http_policy import error_for_exception

DEFAULT_VERSION: Final = "2023-06-01"


class AnthropicHttp(ProviderHttp):
    version: str = DEFAULT_VERSION

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = super()._headers(accept, content_type)
        headers.pop("Authorization", None)
        key = self.settings.api_key
        if key:
            headers["x-api-key"] = key.reveal()
        headers["anthropic-version"] = self.version
        return headers

    def local_path(self, url: str) -> str:
        """The path (and query) of an absolute URL the API minted (``results_url``), to be
        fetched from the configured base URL: the key never goes to a host batchd was not
        configured with."""
        parsed = URL(url)
        base_path = URL(self.base_url).path.rstrip("/")
        path = parsed.raw_path
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        return path + (f"?{parsed.raw_query_string}" if parsed.raw_query_string else "")

    async def post_stream(
        self, op: str, path: str, blocks: Callable[[], Iterator[bytes]], size_bytes: int
    ) -> Any:
        """POST a JSON body of ``size_bytes`` produced block by block by ``blocks()`` (read
        from disk in a worker thread as it is sent), under the transfer timeout; sent once."""
        await self._start(op)
        where = f"{op} (POST {path})"
        headers = self._headers("application/json", "application/json")
        headers["Content-Length"] = str(size_bytes)
        try:
            async with self._session.post(
                self._url(path),
                data=_in_thread(blocks),
                headers=headers,
                timeout=self._transfer_timeout,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                return self._json_result(where, resp.status, resp.headers, raw, resp.reason)
        except ProviderError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise error_for_exception(exc, where) from exc

    async def first_line(self, op: str, path: str) -> bytes:
        """The first line of a download (retried like a read); the rest is never read."""

        async def once() -> bytes:
            await self._start(op)
            where = f"{op} (GET {path})"
            headers = self._headers("application/octet-stream", None)
            try:
                async with self._session.get(
                    self._url(path),
                    headers=headers,
                    timeout=self._call_timeout,
                    allow_redirects=False,
                ) as resp:
                    if resp.status >= 300:
                        raw = await resp.content.read(64 * 1024)
                        raise self._status_error(where, resp.status, resp.headers, raw, resp.reason)
                    return await resp.content.readline()
            except ProviderError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise error_for_exception(exc, where) from exc

        line = await self._with_retries(op, once)
        return line or b""


async def _in_thread(blocks: Callable[[], Iterator[bytes]]) -> AsyncIterator[bytes]:
    iterator = blocks()
    try:
        while True:
            block = await asyncio.to_thread(next, iterator, b"")
            if not block:
                return
            yield block
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
