"""``AnthropicProvider``: Anthropic's Message Batches over aiohttp (``kind = "anthropic"``).

Requests go inline in the create call, streamed from the chunk file (``anthropic_body``);
results come as one JSONL stream from ``results_url``, downloaded durably, then rewritten with
the user's custom_ids (``anthropic_results``). Wire formats and the status mapping are
``anthropic_wire``'s, HTTP policy ``AnthropicHttp``'s (``ProviderHttp`` with Anthropic's
headers). Creates are sent once.

**Exactly once with no tag on the batch.** A message batch carries no metadata and its
requests cannot be read back before it ends, so the tag batchd puts on a job travels in the
only place it can: every request's custom_id is ``<job id>-<index>`` (``staging.indexed_id``).
The scheme (``find_tagged`` and ``fetch_results`` below):

1. Creates on one account (base URL and key) are serialised in this process, and so are the
   lookups: a lookup never runs while a create is in flight, so a batch this process is
   creating is never mistaken for another job's.
2. A lookup for ``{"batchd_job": id}`` (after an ambiguous create or a crash) walks the
   account's batches newest first back to the chunk's intake time (``TagQuery.input``), and
   keeps the ones with the job's request count that no other job of this process holds.
   An ended candidate is decided by the first line of its results (the job's ids or not); of
   the running ones the oldest is adopted *provisionally* (logged: ``anthropic.
   adopted_provisionally``, with how many candidates there were).
3. The results confirm it: every result line must carry one of the job's ids. A batch that
   turns out to be another job's (``Misadopted``: two chunks of one size both in doubt) is not
   used: the ended batches of the same count since the chunk's intake are searched for the one
   whose results are the job's, and those are fetched instead (``anthropic.adoption_corrected``).
   If there is none, the job's requests were never sent: the results are refused
   (``ProviderPermanent``, so the collector records them unavailable with
   ``results.unavailable`` naming the problem) and a person decides (re-submit the file).
   Nothing here ever creates a second batch.

The remaining risk, stated in the README: anything else creating batches of the same request
count on the same workspace while a create is in doubt (another batchd on the same key, or a
person) can be adopted provisionally; the results then refuse it, but the job waits for that
foreign batch to end first. Give batchd a workspace (an API key) of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog

from batchd.errors import ConfigError, NotFound, ProviderPermanent, ProviderTransient
from batchd.providers import anthropic_body as body
from batchd.providers import anthropic_wire as wire
from batchd.providers.anthropic_http import DEFAULT_VERSION, AnthropicHttp
from batchd.providers.anthropic_options import AnthropicOptions
from batchd.providers.anthropic_results import RESULTS_NAME, Misadopted, map_back, owned_by
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
)
from batchd.providers.kind_options import options_of

log = structlog.get_logger(__name__)

BATCHES: Final = "/v1/messages/batches"
PAGE_LIMIT: Final = 100
MAX_PAGES: Final = 1_000
SKEW_S: Final = 300.0  # clocks (ours, the API's) may differ by this much
MAX_BATCH_BYTES: Final = 240_000_000  # chunk bytes: 256 MB per batch, less the id rewriting
_LOCKS: dict[tuple[int, str], asyncio.Lock] = {}


def _seg(value: str) -> str:
    return quote(value, safe="")


def account_lock(base_url: str, key: str) -> asyncio.Lock:
    """The lock of one account in this event loop (shared by every provider on it)."""
    account = hashlib.sha256(f"{base_url}\0{key}".encode()).hexdigest()
    return _LOCKS.setdefault((id(asyncio.get_running_loop()), account), asyncio.Lock())


class AnthropicProvider:
    """One Anthropic workspace (an API key), or anything that speaks its API (the emulator)."""

    staging: Staging = "inline"

    def __init__(
        self,
        settings: ProviderSettings,
        session: aiohttp.ClientSession,
        *,
        version: str = DEFAULT_VERSION,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name: str = settings.name
        self.limits: ProviderLimits = replace(
            settings.limits,
            max_requests_per_job=min(settings.limits.max_requests_per_job, body.MAX_REQUESTS),
            max_bytes_per_job=min(settings.limits.max_bytes_per_job, MAX_BATCH_BYTES),
        )
        self.http = AnthropicHttp(settings, session, rng=rng, sleep=sleep)
        self.http.version = version
        self.emulator: Any = None  # set by the registry for kind "emulator"
        key = settings.api_key.reveal() if settings.api_key else ""
        self._account = (self.http.base_url, key)
        self._holds: dict[str, str] = {}  # batch id -> batchd job id, as created or adopted
        self._meta: dict[str, dict[str, str]] = {}  # batch id -> batchd's tag on it

    @property
    def calls(self) -> Any:
        return self.http.calls

    def _lock(self) -> asyncio.Lock:
        return account_lock(*self._account)

    async def probe(self) -> int | None:
        """The batches list, one batch long (Anthropic counts nothing: None)."""
        await self.http.call_json("list_jobs", "GET", BATCHES, query=[("limit", "1")])
        return None

    # ------------------------------------------------------------------ staging (inline)
    def encode_input(self, chunk: ChunkInput, scratch: Path) -> Path:
        raise ProviderPermanent("Anthropic takes its requests inline: nothing is uploaded")

    async def upload_file(self, path: Path, *, filename: str | None = None) -> FileRef:
        raise ProviderPermanent("Anthropic has no file uploads (requests go inline)")

    async def find_files(self, search: str) -> list[FileRef]:
        return []

    async def delete_file(self, file_id: str) -> None:
        return None

    # ------------------------------------------------------------------ results as a "file"
    # An ended batch's results are its output file, named by the batch id (``JobSnapshot.
    # output_file``): ``get_file`` and ``download_file`` serve them raw (the ids as sent).
    async def get_file(self, file_id: str) -> FileRef:
        data = await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(file_id)}")
        if wire.results_url(data) is None:
            raise NotFound(f"batch {file_id} has no results yet")
        return FileRef(id=file_id, filename=RESULTS_NAME, size_bytes=0, purpose="batch_output")

    async def download_file(self, file_id: str, to_path: Path) -> int:
        data = await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(file_id)}")
        url = wire.results_url(data)
        if url is None:
            raise NotFound(f"batch {file_id} has no results yet")
        return await self.http.download("get_results", self.http.local_path(url), to_path)

    # ------------------------------------------------------------------ jobs
    async def create_job(self, spec: JobSpec) -> JobSnapshot:
        """The chunk's requests streamed in the create body; sent once (an ambiguous failure
        is raised for the caller to reconcile through ``find_tagged``)."""
        chunk = spec.input
        if chunk is None:
            raise ProviderPermanent("an Anthropic batch needs the chunk's requests (spec.input)")
        count, size = await asyncio.to_thread(body.measure, chunk)
        problem = body.too_large(count, size)
        if problem is not None:
            raise ProviderPermanent(f"the chunk cannot be one Anthropic batch: {problem}")
        async with self._lock():
            data = await self.http.post_stream(
                "create_job", BATCHES, lambda: body.blocks(chunk), size
            )
            snap = wire.parse_batch(data, spec.metadata, spec.endpoint)
            self._holds[snap.id] = chunk.job_id
            self._meta[snap.id] = dict(spec.metadata)
        log.info("anthropic.created", provider=self.name, batch_id=snap.id, requests=count)
        return snap

    async def get_job(self, job_id: str) -> JobSnapshot:
        data = await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(job_id)}")
        return wire.parse_batch(data, self._tag(job_id))

    def _tag(self, batch_id: str) -> dict[str, str]:
        return dict(self._meta.get(batch_id, {}))

    async def cancel_job(self, job_id: str) -> JobSnapshot:
        """Idempotent (an ended batch is answered as it is), so retried like a read."""
        data = await self.http.call_json("cancel_job", "POST", f"{BATCHES}/{_seg(job_id)}/cancel")
        return wire.parse_batch(data, self._tag(job_id))

    async def delete_job(self, job_id: str) -> None:
        await self.http.call_json("delete_job", "DELETE", f"{BATCHES}/{_seg(job_id)}")
        self._holds.pop(job_id, None)
        self._meta.pop(job_id, None)

    async def iter_batches(self, since: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """The account's batches, newest first, down to the first created before ``since``;
        bounded, never loops on a server that repeats a page."""
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query = [("limit", str(PAGE_LIMIT))] + ([("after_id", after)] if after else [])
            data = await self.http.call_json("list_jobs", "GET", BATCHES, query=query)
            page = [b for b in data.get("data") or [] if isinstance(b, dict) and "id" in b]
            fresh = [b for b in page if b["id"] not in seen]
            for batch in fresh:
                created = wire.parse_time(batch.get("created_at"))
                if since is not None and created is not None and created < since:
                    return
                seen.add(batch["id"])
                yield batch
            last = data.get("last_id")
            if not fresh or not data.get("has_more") or not isinstance(last, str):
                return
            after = last
        log.warning("provider.page_limit", provider=self.name, op="list_jobs", pages=MAX_PAGES)

    # ------------------------------------------------------------------ exactly once
    async def find_tagged(self, query: TagQuery) -> AsyncIterator[JobSnapshot]:
        """The batches this process created or adopted that carry the tag (and are in one of
        ``query.states``), newest first; and for ``{"batchd_job": id}`` with the job's chunk
        (``TagQuery.input``, after an ambiguous create or a restart) the batch that holds that
        job's requests, or the oldest candidate adopted provisionally (see the module's
        scheme). The API keeps no tag: a batch created by a process that has since stopped is
        found only the second way (the tracker polls the others by id)."""
        chunk = query.input
        job_id = query.tag.get("batchd_job")
        if job_id is not None and chunk is not None and job_id not in self._holds.values():
            found = await self._lookup(chunk)
            if found is not None:
                self._meta[found["id"]] = dict(query.tag)
        mine = {b: m for b, m in self._meta.items() if carries_metadata_map(m, query.tag)}
        if not mine:
            return
        async for batch in self.iter_batches(query.created_after):
            meta = mine.pop(batch["id"], None)
            if meta is None:
                continue
            snap = wire.parse_batch(batch, meta)
            if not query.states or snap.state in query.states:
                yield snap
            if not mine:
                return

    async def _lookup(self, chunk: ChunkInput) -> dict[str, Any] | None:
        count, _ = await asyncio.to_thread(body.measure, chunk)
        since = await asyncio.to_thread(_intake_time, chunk)
        async with self._lock():
            candidates = [
                b
                async for b in self.iter_batches(since)
                if wire.request_total(b) == count and b["id"] not in self._holds
            ]
            chosen = await self._choose(chunk.job_id, candidates[::-1])
            if chosen is not None:
                self._holds[chosen["id"]] = chunk.job_id
        return chosen

    async def _choose(
        self, job_id: str, oldest_first: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        running = []
        for batch in oldest_first:
            url = wire.results_url(batch)
            if url is None:
                running.append(batch)
                continue
            first = await self.http.first_line("get_results", self.http.local_path(url))
            if owned_by(job_id, first):
                log.info(
                    "anthropic.adopted", provider=self.name, batch_id=batch["id"], job_id=job_id
                )
                return batch
        if not running:
            return None
        log.warning(
            "anthropic.adopted_provisionally",
            provider=self.name,
            batch_id=running[0]["id"],
            job_id=job_id,
            candidates=len(running),
        )
        return running[0]

    # ------------------------------------------------------------------ results
    async def fetch_results(self, refs: ResultRefs, folder: Path) -> list[Fetched]:
        """The batch's results stream, mapped back to the user's ids into
        ``folder/results.jsonl``. A batch that is not the job's is replaced by the one that
        is, when it exists (see the module's scheme)."""
        if refs.chunk is None:
            raise ProviderPermanent("Anthropic results need the job's chunk to map ids back")
        await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
        job_id = refs.batchd_job or self._holds.get(refs.job_id) or folder.name
        try:
            return [await self._fetch_one(refs.job_id, refs.chunk, job_id, folder)]
        except Misadopted as exc:
            log.warning(
                "anthropic.adoption_refuted", batch_id=refs.job_id, job_id=job_id, problem=str(exc)
            )
            right = await self._search_ended(refs.chunk, job_id, exclude=refs.job_id)
            if right is None:
                raise ProviderPermanent(
                    f"batch {refs.job_id} holds another job's requests and no batch holds job "
                    f"{job_id}'s: its requests were never sent; submit the file again"
                ) from exc
            log.warning(
                "anthropic.adoption_corrected", wrong=refs.job_id, right=right, job_id=job_id
            )
            return [await self._fetch_one(right, refs.chunk, job_id, folder)]

    async def _fetch_one(self, batch_id: str, chunk: Path, job_id: str, folder: Path) -> Fetched:
        data = await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(batch_id)}")
        url = wire.results_url(data)
        if url is None:
            raise ProviderTransient(f"batch {batch_id} has no results yet (not ended)")
        raw = folder / f".{RESULTS_NAME}.raw"
        try:
            await self.http.download("get_results", self.http.local_path(url), raw)
            dest = folder / RESULTS_NAME
            size = await asyncio.to_thread(map_back, raw, chunk, job_id, dest)
        finally:
            await asyncio.to_thread(raw.unlink, missing_ok=True)
        return Fetched(dest, size, batch_id)

    async def _search_ended(self, chunk: Path, job_id: str, *, exclude: str) -> str | None:
        neutral = ChunkInput(chunk, job_id, wire.ENDPOINT)
        count, _ = await asyncio.to_thread(body.measure, neutral)
        since = await asyncio.to_thread(_intake_time, neutral)
        async for batch in self.iter_batches(since):
            url = wire.results_url(batch)
            if batch["id"] == exclude or url is None or wire.request_total(batch) != count:
                continue
            if owned_by(
                job_id, await self.http.first_line("get_results", self.http.local_path(url))
            ):
                self._holds[batch["id"]] = job_id
                return str(batch["id"])
        return None

    async def delete_results(self, refs: ResultRefs) -> list[str]:
        """Delete the ended batch (and so its results) once batchd holds them (the collector
        asks when ``[collect] delete_result_files`` is on); only a batch whose results are the
        job's (a corrected adoption leaves the other job's batch alone)."""
        batch_id = refs.output_file
        if not batch_id:
            return []
        job_id = refs.batchd_job or self._holds.get(batch_id)
        try:
            if not await self._owned(batch_id, job_id):
                log.warning("anthropic.not_deleted", batch_id=batch_id, job_id=job_id)
                return []
            await self.delete_job(batch_id)
        except NotFound:  # gone already
            pass
        return [batch_id]

    async def _owned(self, batch_id: str, job_id: str | None) -> bool:
        """Whether the batch's results are ``job_id``'s (raises ``NotFound`` if it is gone)."""
        data = await self.http.call_json("get_job", "GET", f"{BATCHES}/{_seg(batch_id)}")
        url = wire.results_url(data)
        if url is None or job_id is None:
            return False
        first = await self.http.first_line("get_results", self.http.local_path(url))
        return owned_by(job_id, first) is True

    def parse_result_line(self, raw: bytes) -> ResultLine:
        return wire.parse_result_line(raw)


def _intake_time(chunk: ChunkInput) -> float:
    """No batch of this chunk can be older than the chunk file (less the clock skew)."""
    return chunk.path.stat().st_mtime - SKEW_S


def carries_metadata_map(meta: dict[str, str], wanted: Any) -> bool:
    return all(meta.get(key) == value for key, value in wanted.items())


@asynccontextmanager
async def open_anthropic(
    settings: ProviderSettings, session: aiohttp.ClientSession
) -> AsyncIterator[BatchProvider]:
    """Provider kind ``anthropic`` (``batchd.providers.registry``)."""
    if not settings.api_key:
        raise ConfigError(f"provider {settings.name!r}: no API key configured")
    options = options_of(settings, AnthropicOptions)
    yield AnthropicProvider(settings, session, version=options.anthropic_version)
