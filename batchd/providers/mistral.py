"""``MistralProvider``: the Mistral Batch and Files API over aiohttp.

Every operation and parameter of ``/v1/batch/jobs`` and ``/v1/files``. HTTP policy (retries,
rate limit, timeouts, error mapping) is ``ProviderHttp``'s; wire formats and the status mapping
are ``mistral_wire``'s. Upload and create are sent once: the caller reconciles through
``find_files`` / ``list_jobs(metadata=...)``.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import structlog

from batchd.errors import BatchdError, ConfigError, ProviderPermanent
from batchd.models import TERMINAL, JobState
from batchd.providers import mistral_wire as wire
from batchd.providers.base import (
    BatchProvider,
    ChunkInput,
    Fetched,
    FileRef,
    JobFilter,
    JobPage,
    JobSnapshot,
    JobSpec,
    ProviderLimits,
    ProviderSettings,
    ResultLine,
    ResultRefs,
    Staging,
    TagQuery,
    carries_metadata,
)
from batchd.providers.http import ProviderHttp
from batchd.providers.mistral_models import MistralFile, MistralJob
from batchd.providers.mistral_wire import FilePage, FileQuery
from batchd.providers.result_files import delete_result_files, fetch_result_files

log = structlog.get_logger(__name__)

MAX_PAGES: Final = 10_000  # a page walk never goes further (1M objects at 100 a page)
JOBS: Final = "/v1/batch/jobs"
FILES: Final = "/v1/files"
ALL_FILES: Final = FileQuery()
CANCEL_REFUSED: Final = frozenset({400, 409})  # how a server may refuse a moot cancel
CANCEL_DONE: Final = TERMINAL | {JobState.CANCELLING}
# An input file up to this size is read in one go and uploaded from memory; larger, streamed.
IN_MEMORY_UPLOAD_BYTES: Final = 4 * 1024 * 1024


def _seg(value: str) -> str:
    """An id as one path segment (never lets a ``/`` or ``?`` in an id change the route)."""
    return quote(value, safe="")


def _small_content(handle: BinaryIO) -> bytes | None:
    """The whole file if it is at most ``IN_MEMORY_UPLOAD_BYTES`` (one read, one trip to a
    worker thread, instead of aiohttp's reads and close on the executor); None: stream it."""
    if os.fstat(handle.fileno()).st_size > IN_MEMORY_UPLOAD_BYTES:
        return None
    return handle.read()


def _has(job: JobSnapshot, filters: JobFilter) -> bool:
    return carries_metadata(job, filters.metadata)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_HasId)


async def walk_pages(
    fetch: Callable[[int], Awaitable[tuple[Sequence[ItemT], int | None]]],
    *,
    start: int,
    page_size: int,
    what: str,
) -> AsyncIterator[ItemT]:
    """Walk numbered pages from ``start``. Stops on an empty page, when ``total`` is reached
    (or, without a total, on a short page), on a page of ids already seen (a server ignoring
    ``page``) and after ``MAX_PAGES``; an item seen twice (the list shifted) is yielded once."""
    seen: set[str] = set()
    page: int | None = start
    for _ in range(MAX_PAGES):
        if page is None:
            return
        items, total = await fetch(page)
        ids = [item.id for item in items]
        if wire.page_is_repeat(ids, seen):
            log.warning("provider.page_repeated", op=what, page=page)
            return
        for item in items:
            if item.id not in seen:
                seen.add(item.id)
                yield item
        page = wire.next_page(page, page_size, len(ids), total)
    log.warning("provider.page_limit", op=what, pages=MAX_PAGES)


class MistralProvider:
    """One Mistral account (or anything that speaks its API, such as the emulator)."""

    staging: Staging = "file"

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name: str = settings.name
        self.limits: ProviderLimits = settings.limits
        self.http = ProviderHttp(settings, session, rng=rng, sleep=sleep)
        self.emulator: Any = None  # set by the registry for kind "emulator"

    @property
    def calls(self) -> Counter[str]:
        """Requests sent per operation (every attempt)."""
        return self.http.calls

    async def probe(self) -> int | None:
        """The jobs list, one job long: its ``total``."""
        return (await self.list_jobs(JobFilter(page_size=1))).total

    # ------------------------------------------------------------------ files
    def encode_input(self, chunk: ChunkInput, scratch: Path) -> Path:
        """Mistral's input lines are batchd's neutral ones: the chunk is uploaded as it is."""
        return chunk.path

    async def upload_file(
        self,
        path: Path,
        *,
        filename: str | None = None,
        purpose: str = "batch",
        visibility: str = "workspace",
        expiry: int | None = None,
    ) -> MistralFile:
        """Multipart upload exactly like the SDK, streamed from disk (a file of at most
        ``IN_MEMORY_UPLOAD_BYTES`` is read in one go and sent from memory); sent once. The
        filename goes out raw (UTF-8, quotes escaped), as the SDK sends it, not percent-encoded.
        ``expiry`` is sent only when given (its unit is undocumented; the emulator reads
        hours)."""
        name = filename or path.name
        if any(c < " " or c == "\x7f" for c in name):
            raise BatchdError(f"upload filename {name!r} contains control characters")
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise BatchdError(f"cannot read {path}: {exc.strerror}") from exc
        with handle:
            try:
                content = await asyncio.to_thread(_small_content, handle)
            except OSError as exc:
                raise BatchdError(f"cannot read {path}: {exc.strerror}") from exc

            def form() -> aiohttp.FormData:
                data = aiohttp.FormData(quote_fields=False)
                data.add_field("visibility", visibility)
                data.add_field("purpose", purpose)
                if expiry is not None:
                    data.add_field("expiry", str(expiry))
                data.add_field(
                    "file",
                    handle if content is None else content,
                    filename=name,
                    content_type="application/octet-stream",
                )
                return data

            return wire.parse_file(await self.http.call_form("upload_file", FILES, form))

    async def list_files(self, query: FileQuery = ALL_FILES) -> FilePage:
        data = await self.http.call_json("list_files", "GET", FILES, query=wire.files_query(query))
        return wire.parse_file_page(data, query)

    def iter_files(self, query: FileQuery = ALL_FILES) -> AsyncIterator[FileRef]:
        """Every file over every page from ``query.page``; bounded, never loops."""

        async def fetch(page: int) -> tuple[tuple[FileRef, ...], int | None]:
            result = await self.list_files(replace(query, page=page))
            return result.files, result.total

        return walk_pages(fetch, start=query.page, page_size=query.page_size, what="list_files")

    async def find_files(self, search: str) -> list[FileRef]:
        """Every file whose name matches ``search`` (the API's ``search=``), over all pages."""
        return [ref async for ref in self.iter_files(FileQuery(search=search))]

    async def get_file(self, file_id: str) -> MistralFile:
        return wire.parse_file(
            await self.http.call_json("get_file", "GET", f"{FILES}/{_seg(file_id)}")
        )

    async def delete_file(self, file_id: str) -> None:
        await self.http.call_json("delete_file", "DELETE", f"{FILES}/{_seg(file_id)}")

    async def download_file(self, file_id: str, to_path: Path) -> int:
        return await self.http.download(
            "download_file", f"{FILES}/{_seg(file_id)}/content", to_path
        )

    async def file_url(self, file_id: str, *, expiry_hours: int = 24) -> str:
        """A signed URL to the content, valid ``expiry_hours`` (1..168)."""
        data = await self.http.call_json(
            "file_url",
            "GET",
            f"{FILES}/{_seg(file_id)}/url",
            query=[("expiry", str(expiry_hours))],
        )
        return wire.parse_signed_url(data)

    # ------------------------------------------------------------------ jobs
    async def create_job(self, spec: JobSpec) -> JobSnapshot:
        """Sent once; an ambiguous failure (timeout, 5xx) is raised as ``ProviderTransient``.
        A ``MistralJobSpec`` may name an agent."""
        body = wire.create_body(spec)
        return wire.parse_job(await self.http.call_json("create_job", "POST", JOBS, body=body))

    async def get_job(self, job_id: str, *, inline: bool | None = None) -> MistralJob:
        """``inline`` (Mistral only) asks for the inline results (``MistralJob.outputs``)."""
        query = [] if inline is None else [("inline", "true" if inline else "false")]
        data = await self.http.call_json("get_job", "GET", f"{JOBS}/{_seg(job_id)}", query=query)
        return wire.parse_job(data)

    async def list_jobs(self, filters: JobFilter) -> JobPage:
        """One page. States Mistral cannot filter on (only ``UNKNOWN``) match nothing.

        Only jobs carrying every ``filters.metadata`` pair are returned, whatever the server
        did with the filter. ``total`` is the server's count for the query and is what paging
        follows: if the server ignored the metadata filter it also counts the jobs dropped here,
        so it is then an upper bound on the matches, and a page may hold fewer than
        ``page_size`` jobs without being the last."""
        page = await self._server_page(filters)
        return replace(page, jobs=tuple(j for j in page.jobs if _has(j, filters)))

    def iter_jobs(self, filters: JobFilter) -> AsyncIterator[JobSnapshot]:
        """Every matching job over every page from ``filters.page``; see ``walk_pages``. The
        walk follows the server's pages; jobs without ``filters.metadata`` are dropped after."""

        async def fetch(page: int) -> tuple[tuple[JobSnapshot, ...], int | None]:
            result = await self._server_page(replace(filters, page=page))
            return result.jobs, result.total

        walk = walk_pages(fetch, start=filters.page, page_size=filters.page_size, what="list_jobs")
        return (job async for job in walk if _has(job, filters))

    def find_tagged(self, query: TagQuery) -> AsyncIterator[JobSnapshot]:
        """The jobs list with the tag as its metadata filter (checked here too: ``_has``) and
        the states as its status filter."""
        return self.iter_jobs(
            JobFilter(
                metadata=dict(query.tag),
                states=query.states,
                created_after=query.created_after,
                page_size=query.page_size,
            )
        )

    async def _server_page(self, filters: JobFilter) -> JobPage:
        """One page as the server sent it; warns when it holds jobs the metadata filter should
        have excluded (the caller drops them)."""
        if filters.states and not wire.statuses_for(filters.states):
            return JobPage((), 0, filters.page, filters.page_size)
        query = wire.jobs_query(filters)
        data = await self.http.call_json("list_jobs", "GET", JOBS, query=query)
        page = wire.parse_job_page(data, filters.page, filters.page_size)
        stray = sum(1 for job in page.jobs if not _has(job, filters))
        if stray:
            log.warning("provider.metadata_filter_ignored", provider=self.name, dropped=stray)
        return page

    async def cancel_job(self, job_id: str) -> JobSnapshot:
        """Idempotent on the provider's side, so retried like a read. A 400/409 refusal is
        success when the job is already terminal or being cancelled (reference 5 #13, #15):
        the job is fetched and returned; otherwise the refusal is raised."""
        try:
            data = await self.http.call_json("cancel_job", "POST", f"{JOBS}/{_seg(job_id)}/cancel")
        except ProviderPermanent as exc:
            if exc.status not in CANCEL_REFUSED:
                raise
            snapshot = await self.get_job(job_id)
            if snapshot.state not in CANCEL_DONE:
                raise
            log.info("provider.cancel_moot", provider=self.name, provider_job_id=job_id)
            return snapshot
        return wire.parse_job(data)

    async def delete_job(self, job_id: str) -> None:
        await self.http.call_json("delete_job", "DELETE", f"{JOBS}/{_seg(job_id)}")

    # ------------------------------------------------------------------ results
    async def fetch_results(self, refs: ResultRefs, folder: Path) -> list[Fetched]:
        """The output and error files (``result_files``)."""
        return await fetch_result_files(self.download_file, refs, folder)

    async def delete_results(self, refs: ResultRefs) -> list[str]:
        return await delete_result_files(self.delete_file, refs)

    def parse_result_line(self, raw: bytes) -> ResultLine:
        return wire.parse_result_line(raw)


@asynccontextmanager
async def open_mistral(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    """Provider kind ``mistral`` (``batchd.providers.registry``)."""
    if not settings.api_key:
        raise ConfigError(f"provider {settings.name!r}: no API key configured")
    yield MistralProvider(settings, session)
