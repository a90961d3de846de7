"""``OpenAIProvider``: the OpenAI Batch and Files API over aiohttp.

Files (``purpose=batch`` uploads streamed from disk, downloads streamed and verified), batches
(create, retrieve, list, cancel; OpenAI has no delete), and results as an output and an error
file. HTTP policy is ``ProviderHttp``'s (plus the ``OpenAI-Organization`` / ``OpenAI-Project``
headers); wire formats and the status map are ``openai_wire``'s. Upload and create are sent once.

**Finding a batch again without a metadata filter.** ``GET /v1/batches`` takes only ``after``
and ``limit`` (reference 0.1): ``find_tagged`` walks it newest first, 100 a page, keeps the
batches whose metadata carries the tag (client-side) and in the wanted states, and stops at
the first batch created before ``created_after`` minus ``CLOCK_SKEW_S`` (the list is newest
first, so nothing older can match), after ``MAX_PAGES`` pages (logged), or when the server hands
back a cursor already followed (logged). An upload's name carries the job (``uploads.py``), so
``find_files`` finds an orphan upload by name in the files list (newest first, client-side
substring match, the same bounds).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog

from batchd.errors import BatchdError, ConfigError, ProviderPermanent
from batchd.models import TERMINAL, JobState
from batchd.providers import openai_wire as wire
from batchd.providers.base import (
    BatchProvider,
    ChunkInput,
    Fetched,
    FileRef,
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
from batchd.providers.kind_options import options_of
from batchd.providers.openai_options import OpenAISettings
from batchd.providers.openai_wire import CursorPage, OpenAIJob
from batchd.providers.result_files import delete_result_files, fetch_result_files
from batchd.providers.staging import NeutralRequest, write_encoded

log = structlog.get_logger(__name__)

BATCHES: Final = "/batches"
FILES: Final = "/files"
PAGE_SIZE: Final = 100  # the most GET /v1/batches returns
FILES_PAGE_SIZE: Final = 1000
MAX_PAGES: Final = 200  # a walk never goes further (20,000 batches)
CLOCK_SKEW_S: Final = 300.0  # a batch's created_at may be this much before batchd's clock said
CANCEL_REFUSED: Final = frozenset({400, 409})
CANCEL_DONE: Final = TERMINAL | {JobState.CANCELLING}


def _seg(value: str) -> str:
    return quote(value, safe="")


class OpenAIHttp(ProviderHttp):
    """``ProviderHttp`` with OpenAI's optional organisation and project headers."""

    def __init__(self, *args: Any, extra_headers: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._extra = extra_headers

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        return {**super()._headers(accept, content_type), **self._extra}


class OpenAIProvider:
    """One OpenAI organisation/project (or anything that speaks its API, such as the
    emulator). ``base_url`` includes ``/v1``."""

    staging: Staging = "file"

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        *,
        organization: str | None = None,
        project: str | None = None,
        output_expires_s: int | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name: str = settings.name
        self.limits: ProviderLimits = settings.limits
        headers = {}
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        self.http = OpenAIHttp(settings, session, rng=rng, sleep=sleep, extra_headers=headers)
        self.output_expires_s = output_expires_s
        self.emulator: Any = None  # set when an in-process emulator serves it

    @property
    def calls(self) -> Counter[str]:
        """Requests sent per operation (every attempt)."""
        return self.http.calls

    async def probe(self) -> int | None:
        """One page of one batch; OpenAI does not count them (None)."""
        await self.list_batches(limit=1)
        return None

    # ------------------------------------------------------------------ files
    def encode_input(self, chunk: ChunkInput, scratch: Path) -> Path:
        """OpenAI's lines: ``{"custom_id","method":"POST","url","body"}``, the route's model
        in every body that names none (``scratch``, written whole)."""

        def encode(request: NeutralRequest) -> bytes:
            return wire.encode_line(request.custom_id, request.body, chunk.endpoint, chunk.model)

        return write_encoded(chunk, scratch, encode)

    async def upload_file(
        self, path: Path, *, filename: str | None = None, purpose: str = "batch"
    ) -> FileRef:
        """Multipart (``purpose``, then ``file``) streamed from disk; sent once."""
        name = filename or path.name
        if any(c < " " or c == "\x7f" for c in name):
            raise BatchdError(f"upload filename {name!r} contains control characters")
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise BatchdError(f"cannot read {path}: {exc.strerror}") from exc
        with handle:

            def form() -> aiohttp.FormData:
                data = aiohttp.FormData(quote_fields=False)
                data.add_field("purpose", purpose)
                data.add_field("file", handle, filename=name, content_type="application/jsonl")
                return data

            return wire.parse_file(await self.http.call_form("upload_file", FILES, form))

    async def list_files(
        self, *, after: str | None = None, limit: int = FILES_PAGE_SIZE, purpose: str | None = None
    ) -> CursorPage:
        query = wire.list_query(after, limit)
        if purpose is not None:
            query.append(("purpose", purpose))
        data = await self.http.call_json("list_files", "GET", FILES, query=query)
        return wire.parse_page(data, wire.parse_file, "file")

    def iter_files(self, *, purpose: str | None = None) -> AsyncIterator[FileRef]:
        """Every file, newest first, over every page; bounded, never loops."""

        def fetch(after: str | None) -> Awaitable[CursorPage]:
            return self.list_files(after=after, purpose=purpose)

        return walk_cursor(fetch, "list_files")

    async def find_files(self, search: str) -> list[FileRef]:
        """Every ``purpose=batch`` file whose name contains ``search`` (case-insensitive; the
        files list has no search parameter)."""
        wanted = search.lower()
        return [f async for f in self.iter_files(purpose="batch") if wanted in f.filename.lower()]

    async def get_file(self, file_id: str) -> FileRef:
        return wire.parse_file(
            await self.http.call_json("get_file", "GET", f"{FILES}/{_seg(file_id)}")
        )

    async def delete_file(self, file_id: str) -> None:
        await self.http.call_json("delete_file", "DELETE", f"{FILES}/{_seg(file_id)}")

    async def download_file(self, file_id: str, to_path: Path) -> int:
        return await self.http.download(
            "download_file", f"{FILES}/{_seg(file_id)}/content", to_path
        )

    # ------------------------------------------------------------------ batches
    async def create_job(self, spec: JobSpec) -> OpenAIJob:
        """Sent once; an ambiguous failure (timeout, 5xx) is raised as ``ProviderTransient``."""
        body = wire.create_body(spec, self.output_expires_s)
        return wire.parse_batch(await self.http.call_json("create_job", "POST", BATCHES, body=body))

    async def get_job(self, job_id: str) -> OpenAIJob:
        return wire.parse_batch(
            await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(job_id)}")
        )

    async def list_batches(self, *, after: str | None = None, limit: int = PAGE_SIZE) -> CursorPage:
        """One page of ``GET /v1/batches`` (newest first)."""
        query = wire.list_query(after, limit)
        data = await self.http.call_json("list_jobs", "GET", BATCHES, query=query)
        return wire.parse_page(data, wire.parse_batch, "batch")

    def iter_batches(self, *, limit: int = PAGE_SIZE) -> AsyncIterator[OpenAIJob]:
        """Every batch, newest first, over every page; bounded, never loops."""

        def fetch(after: str | None) -> Awaitable[CursorPage]:
            return self.list_batches(after=after, limit=limit)

        return walk_cursor(fetch, "list_jobs")

    async def find_tagged(self, query: TagQuery) -> AsyncIterator[JobSnapshot]:
        """The list walked newest first, matched client-side; stops at the first batch created
        before ``created_after - CLOCK_SKEW_S`` (see the module docstring)."""
        stop_before = None if query.created_after is None else query.created_after - CLOCK_SKEW_S
        async for batch in self.iter_batches(limit=min(max(query.page_size, 1), PAGE_SIZE)):
            if _older(batch, stop_before):
                return
            if not carries_metadata(batch, query.tag):
                continue
            if query.states and batch.state not in query.states:
                continue
            yield batch

    async def cancel_job(self, job_id: str) -> JobSnapshot:
        """Idempotent on OpenAI's side, so retried like a read. A 400/409 refusal is success
        when the batch has ended or is being cancelled: the batch is fetched and returned."""
        try:
            data = await self.http.call_json(
                "cancel_job", "POST", f"{BATCHES}/{_seg(job_id)}/cancel"
            )
        except ProviderPermanent as exc:
            if exc.status not in CANCEL_REFUSED:
                raise
            snapshot = await self.get_job(job_id)
            if snapshot.state not in CANCEL_DONE:
                raise
            log.info("provider.cancel_moot", provider=self.name, provider_job_id=job_id)
            return snapshot
        return wire.parse_batch(data)

    async def delete_job(self, job_id: str) -> None:
        """OpenAI batches cannot be deleted: nothing to do (the batch stays listed)."""

    # ------------------------------------------------------------------ results
    async def fetch_results(self, refs: ResultRefs, folder: Path) -> list[Fetched]:
        """The output and error files (``result_files``)."""
        return await fetch_result_files(self.download_file, refs, folder)

    async def delete_results(self, refs: ResultRefs) -> list[str]:
        return await delete_result_files(self.delete_file, refs)

    def parse_result_line(self, raw: bytes) -> ResultLine:
        return wire.parse_result_line(raw)


def _older(batch: JobSnapshot, stop_before: float | None) -> bool:
    return (
        stop_before is not None and batch.created_at is not None and batch.created_at < stop_before
    )


async def walk_cursor(
    fetch: Callable[[str | None], Awaitable[CursorPage]], what: str
) -> AsyncIterator[Any]:
    """Follow ``after`` cursors from the newest page: stops when ``has_more`` is false or a
    page is empty, on a cursor already followed (``provider.cursor_repeated``) and after
    ``MAX_PAGES`` (``provider.page_limit``); an item seen twice is yielded once."""
    seen: set[str] = set()
    used: set[str] = set()
    after: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(after)
        for item in page.items:
            if item.id not in seen:
                seen.add(item.id)
                yield item
        after = page.next_after
        if after is None:
            return
        if wire.cursor_repeats(after, used):
            log.warning("provider.cursor_repeated", op=what, after=after)
            return
        used.add(after)
    log.warning("provider.page_limit", op=what, pages=MAX_PAGES)


@asynccontextmanager
async def open_openai(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    """Provider kind ``openai`` (``batchd.providers.registry``)."""
    if not settings.api_key:
        raise ConfigError(f"provider {settings.name!r}: no API key configured")
    options = options_of(settings, OpenAISettings)
    yield OpenAIProvider(
        settings,
        session,
        organization=options.organization,
        project=options.project,
        output_expires_s=options.output_expires_after_s,
    )
