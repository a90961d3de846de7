"""A small typed client of batchd's HTTP API: submit, wait, stream results and events.

    async with Client("unix:/run/batchd/api.sock") as bd:
        accepted = await bd.submit(Path("prompts.jsonl"))
        done = await bd.wait(accepted["id"])
        async for line in bd.results(accepted["id"]):
            ...

``address`` is ``unix:<path>`` (the caller is known by its uid) or ``http://host:port`` with a
bearer ``token``. Errors are ``ApiError`` carrying the server's problem document.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp

from batchd.errors import BatchdError

FINISHED: Final = frozenset({"done", "rejected", "abandoned"})
CHUNK_BYTES: Final = 256 * 1024


class ApiError(BatchdError):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title') or 'error'}")
        self.status = status
        self.problem = problem


class Client:
    def __init__(self, address: str, *, token: str | None = None, timeout_s: float = 300.0):
        if address.startswith("unix:"):
            self._connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                path=address.removeprefix("unix:")
            )
            self._base = "http://batchd"
        else:
            self._connector = aiohttp.TCPConnector()
            self._base = address if "://" in address else f"http://{address}"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            connector=self._connector, headers=self._headers, timeout=self._timeout
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BatchdError("use the client as 'async with Client(...) as bd:'")
        return self._session

    # ------------------------------------------------------------------ calls
    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self._base + path, **kwargs) as response:
            await _raise_for(response)
            return await response.json(content_type=None)

    async def submit(
        self,
        source: Path | bytes | AsyncIterable[bytes],
        *,
        name: str | None = None,
        route: str | None = None,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Hand a batch file to a route; returns ``{"id", "name", "route", "state"}``."""
        if name is None:
            if not isinstance(source, Path):
                raise BatchdError("submit() needs a name unless it is given a path")
            name = source.name
        params = {"name": name, **({"route": route} if route else {})}
        if options is not None:
            params["options"] = json.dumps(options)
        headers = {"Content-Type": "application/jsonl"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body: Any = source
        if isinstance(source, bytes):
            body = io.BytesIO(source)
        elif isinstance(source, Path):
            body = _chunks(source)
        result: dict[str, Any] = await self._json(
            "POST", "/v1/submissions", params=params, data=body, headers=headers
        )
        return result

    async def get(self, submission_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._json("GET", f"/v1/submissions/{submission_id}")
        return found

    async def list(
        self,
        *,
        states: list[str] | None = None,
        route: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("state", s) for s in states or []]
        params += [("route", route)] if route else []
        params += [("cursor", cursor)] if cursor else []
        page: dict[str, Any] = await self._json("GET", "/v1/submissions", params=params)
        return page

    async def cancel(self, submission_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._json("POST", f"/v1/submissions/{submission_id}/cancel")
        return found

    async def wait(
        self, submission_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Poll until the submission is done, rejected or abandoned (``TimeoutError`` first)."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = await self.get(submission_id)
                if found["state"] in FINISHED:
                    return found
                await asyncio.sleep(poll_s)

    async def results(self, submission_id: str) -> AsyncIterator[dict[str, Any]]:
        """The results in input order, one JSON object per line, streamed."""
        async for line in self._lines(f"/v1/submissions/{submission_id}/results"):
            yield line

    async def errors(self, submission_id: str) -> AsyncIterator[dict[str, Any]]:
        async for line in self._lines(f"/v1/submissions/{submission_id}/errors"):
            yield line

    async def _lines(self, path: str) -> AsyncIterator[dict[str, Any]]:
        async with self.session.get(self._base + path) as response:
            await _raise_for(response)
            async for raw in _split_lines(response):
                if raw.strip():
                    yield json.loads(raw)

    async def events(self, cursor: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Events as they happen (Server-Sent Events), after ``cursor`` or from now on."""
        params = {"cursor": cursor} if cursor else {}
        async with self.session.get(self._base + "/v1/events/stream", params=params) as response:
            await _raise_for(response)
            async for raw in _split_lines(response):
                line = raw.decode()
                if line.startswith("data: "):
                    yield json.loads(line.removeprefix("data: "))


async def _split_lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Lines of any length (a result line may be far over aiohttp's readline limit)."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending:
        yield pending


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        problem = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        problem = {"detail": response.reason}
    raise ApiError(response.status, problem if isinstance(problem, dict) else {})
