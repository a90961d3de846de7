"""An in-memory ``BatchProvider`` for unit tests of the loops: scripted failures, call counts,
and helpers to move jobs along. (Integration tests use the real emulator over HTTP.)

It stages either way (``staging``): ``file`` (the default; with ``encode`` it uploads OpenAI's
line format, written to the scratch file, instead of the chunk as it is) or ``inline`` (the
create reads the chunk itself and sends ids of its own, ``indexed_id``, mapped back when its
results, kept by job id and not as files, are fetched)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchd.errors import NotFound, ProviderError, ProviderPermanent, ProviderTransient
from batchd.models import JobState, RequestCounts
from batchd.providers.base import (
    ChunkInput,
    Fetched,
    FileRef,
    JobFilter,
    JobPage,
    JobSnapshot,
    JobSpec,
    ProviderLimits,
    ResultLine,
    ResultRefs,
    Staging,
    TagQuery,
    carries_metadata,
)
from batchd.providers.result_files import delete_result_files, fetch_result_files
from batchd.providers.staging import (
    NeutralRequest,
    dump_line,
    index_of,
    indexed_id,
    read_requests,
    write_encoded,
)


@dataclass
class FakeJob:
    snapshot: JobSnapshot
    spec: JobSpec
    custom_ids: list[str]  # as sent (inline: indexed_id)
    bodies: list[dict[str, Any]]
    results: bytes = b""  # inline: the results the job serves by its id


@dataclass
class FakeProvider:
    name: str = "fake"
    limits: ProviderLimits = field(default_factory=ProviderLimits)
    staging: Staging = "file"
    encode: bool = False  # file staging: upload OpenAI's line format (method, url, body)
    calls: Counter[str] = field(default_factory=Counter)
    files: dict[str, tuple[FileRef, bytes]] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    # op -> list of exceptions raised on the next calls (before doing anything)
    fail_before: dict[str, list[Exception]] = field(default_factory=lambda: defaultdict(list))
    # op -> list of exceptions raised after the operation took effect (ambiguous outcome)
    fail_after: dict[str, list[Exception]] = field(default_factory=lambda: defaultdict(list))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    clock: Callable[[], float] = lambda: 1_700_000_000.0
    # A slow provider: the next creates time out at once for the client, and each takes effect
    # that many seconds (of ``clock``) later. ``hang_creates``: the next create never answers.
    late_creates: list[float] = field(default_factory=list)
    landing: list[tuple[float, JobSpec]] = field(default_factory=list)
    hang_creates: bool = False

    # ------------------------------------------------------------------ helpers
    def _enter(self, op: str) -> None:
        self.calls[op] += 1
        self.land()
        if self.fail_before[op]:
            raise self.fail_before[op].pop(0)

    def _leave(self, op: str) -> None:
        if self.fail_after[op]:
            raise self.fail_after[op].pop(0)

    def set_state(self, job_id: str, state: JobState, **changes: Any) -> None:
        job = self.jobs[job_id]
        job.snapshot = replace(job.snapshot, state=state, raw_status=state.value.upper(), **changes)

    def finish(
        self,
        job_id: str,
        *,
        state: JobState = JobState.SUCCEEDED,
        failing: set[str] = frozenset(),  # type: ignore[assignment]
        only: int | None = None,
        shuffle: bool = True,
    ) -> None:
        """End a job, writing output/error files for its requests (the first ``only`` of them)."""
        job = self.jobs[job_id]
        ids = job.custom_ids[: only if only is not None else len(job.custom_ids)]
        ok = [c for c in ids if c not in failing]
        bad = [c for c in ids if c in failing]
        if shuffle:
            ok = list(reversed(ok))
        counts = RequestCounts(len(job.custom_ids), len(ids), len(ok), len(bad))
        if self.staging == "inline":  # served by job id, one stream
            job.results = b"".join(map(_ok_line, ok)) + b"".join(map(_bad_line, bad))
            self.set_state(job_id, state, counts=counts)
            return
        output = self._file("out", b"".join(_ok_line(c) for c in ok)) if ok else None
        errors = self._file("err", b"".join(_bad_line(c) for c in bad)) if bad else None
        self.set_state(job_id, state, output_file=output, error_file=errors, counts=counts)

    def _file(self, prefix: str, data: bytes) -> str:
        file_id = f"{prefix}-{next(self._ids)}"
        self.files[file_id] = (FileRef(file_id, f"{file_id}.jsonl", len(data)), data)
        return file_id

    def land(self) -> None:
        """Apply the late creates that are due."""
        for item in [item for item in self.landing if item[0] <= self.clock()]:
            self.landing.remove(item)
            self.create_now(item[1])

    def by_tag(self, batchd_job: str) -> list[FakeJob]:
        return [j for j in self.jobs.values() if j.spec.metadata.get("batchd_job") == batchd_job]

    async def probe(self) -> int | None:
        self._enter("probe")
        return len(self.jobs)

    # ------------------------------------------------------------------ staging, files
    def encode_input(self, chunk: ChunkInput, scratch: Path) -> Path:
        assert self.staging == "file", "an inline provider is never asked to encode a file"
        if not self.encode:
            return chunk.path

        def openai(request: NeutralRequest) -> bytes:
            line = {"custom_id": request.custom_id, "method": "POST", "url": chunk.endpoint}
            return dump_line({**line, "body": request.body})

        return write_encoded(chunk, scratch, openai)

    async def upload_file(self, path: Path, *, filename: str | None = None) -> FileRef:
        self._enter("upload_file")
        data = path.read_bytes()
        file_id = f"file-{next(self._ids)}"
        ref = FileRef(file_id, filename or path.name, len(data), purpose="batch")
        self.files[file_id] = (ref, data)
        self._leave("upload_file")
        return ref

    async def find_files(self, search: str) -> list[FileRef]:
        self._enter("find_files")
        return [ref for ref, _ in self.files.values() if search in ref.filename]

    async def get_file(self, file_id: str) -> FileRef:
        self._enter("get_file")
        if file_id not in self.files:
            raise NotFound(f"no file {file_id}", status=404)
        return self.files[file_id][0]

    async def delete_file(self, file_id: str) -> None:
        self._enter("delete_file")
        self.files.pop(file_id, None)

    async def download_file(self, file_id: str, to_path: Path) -> int:
        self._enter("download_file")
        if file_id not in self.files:
            raise NotFound(f"no file {file_id}", status=404)
        data = self.files[file_id][1]
        to_path.parent.mkdir(parents=True, exist_ok=True)
        to_path.write_bytes(data)
        return len(data)

    # ------------------------------------------------------------------ jobs
    async def create_job(self, spec: JobSpec) -> JobSnapshot:
        self._enter("create_job")
        if self.staging == "inline":
            assert spec.input is not None and not spec.input_files
        elif spec.input_files[0] not in self.files:
            raise NotFound("input file not found", status=404)
        if self.late_creates or self.hang_creates:
            delay = self.late_creates.pop(0) if self.late_creates else 0.0
            self.landing.append((self.clock() + delay, spec))
            if self.hang_creates:
                await asyncio.Event().wait()  # cancelled by the test: the process died
            raise ProviderTransient("create_job: timed out (TimeoutError)")
        snap = self.create_now(spec)
        self._leave("create_job")
        return snap

    def create_now(self, spec: JobSpec) -> JobSnapshot:
        if self.staging == "inline":
            assert spec.input is not None
            sent = [
                (indexed_id(spec.input.job_id, r.index), r.body)
                for r in read_requests(spec.input.path)
            ]
        else:
            data = self.files[spec.input_files[0]][1]
            lines = [json.loads(line) for line in data.splitlines() if line.strip()]
            sent = [(line["custom_id"], line["body"]) for line in lines]
        job_id = f"pj-{next(self._ids)}"
        snap = JobSnapshot(
            id=job_id,
            state=JobState.PENDING,
            raw_status="QUEUED",
            endpoint=spec.endpoint,
            model=spec.model,
            metadata=dict(spec.metadata),
            input_files=spec.input_files,
            created_at=self.clock() + len(self.jobs),
        )
        self.jobs[job_id] = FakeJob(snap, spec, [i for i, _ in sent], [b for _, b in sent])
        return snap

    async def get_job(self, job_id: str, *, inline: bool | None = None) -> JobSnapshot:
        self._enter("get_job")
        if job_id not in self.jobs:
            raise NotFound(f"no job {job_id}", status=404)
        return self.jobs[job_id].snapshot

    async def list_jobs(self, filters: JobFilter) -> JobPage:
        self._enter("list_jobs")
        matches = [
            j.snapshot
            for j in sorted(self.jobs.values(), key=lambda j: j.snapshot.created_at or 0)
            if all(j.spec.metadata.get(k) == v for k, v in filters.metadata.items())
            and (not filters.states or j.snapshot.state in filters.states)
        ]
        start = filters.page * filters.page_size
        page = matches[start : start + filters.page_size]
        return JobPage(tuple(page), len(matches), filters.page, filters.page_size)

    async def iter_jobs(self, filters: JobFilter) -> AsyncIterator[JobSnapshot]:
        page = filters.page
        while True:
            result = await self.list_jobs(replace(filters, page=page))
            for snap in result.jobs:
                yield snap
            if not result.jobs or (page + 1) * filters.page_size >= result.total:
                return
            page += 1

    def find_tagged(self, query: TagQuery) -> AsyncIterator[JobSnapshot]:
        filters = JobFilter(
            metadata=dict(query.tag),
            states=query.states,
            created_after=query.created_after,
            page_size=query.page_size,
        )
        return (s async for s in self.iter_jobs(filters) if carries_metadata(s, query.tag))

    async def cancel_job(self, job_id: str) -> JobSnapshot:
        self._enter("cancel_job")
        if job_id not in self.jobs:
            raise NotFound(f"no job {job_id}", status=404)
        snap = self.jobs[job_id].snapshot
        if snap.state in {JobState.PENDING, JobState.RUNNING}:
            self.set_state(job_id, JobState.CANCELLING)
        self._leave("cancel_job")
        return self.jobs[job_id].snapshot

    async def delete_job(self, job_id: str) -> None:
        self._enter("delete_job")
        self.jobs.pop(job_id, None)

    async def fetch_results(self, refs: ResultRefs, folder: Path) -> list[Fetched]:
        if self.staging == "file":
            return await fetch_result_files(self.download_file, refs, folder)
        self._enter("fetch_results")
        if refs.job_id not in self.jobs or refs.chunk is None:
            raise NotFound(f"no results for {refs.job_id}", status=404)
        job = self.jobs[refs.job_id]
        assert job.spec.input is not None
        users = [r.custom_id for r in read_requests(refs.chunk)]
        lines = []
        for raw in job.results.splitlines():  # the ids sent, mapped back to the user's
            line = json.loads(raw)
            index = index_of(job.spec.input.job_id, line["custom_id"])
            if index is not None and index < len(users):  # (a foreign id stays: unknown)
                line["custom_id"] = users[index]
            lines.append(dump_line(line))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / "results.jsonl"
        path.write_bytes(b"".join(lines))
        return [Fetched(path, path.stat().st_size, refs.job_id)]

    async def delete_results(self, refs: ResultRefs) -> list[str]:
        if self.staging == "inline":
            return []
        return await delete_result_files(self.delete_file, refs)

    def parse_result_line(self, raw: bytes) -> ResultLine:
        try:
            obj = json.loads(raw)
            response = obj.get("response") or {}
            return ResultLine(
                str(obj["custom_id"]),
                response.get("status_code"),
                response.get("body"),
                obj.get("error"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProviderPermanent(f"bad result line: {exc}") from exc


def _ok_line(custom_id: str) -> bytes:
    body = {
        "object": "chat.completion",
        "choices": [{"message": {"content": f"re:{custom_id}"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    line = {
        "id": f"x-{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "body": body},
        "error": None,
    }
    return json.dumps(line).encode() + b"\n"


def _bad_line(custom_id: str) -> bytes:
    body = {"object": "error", "message": "bad request", "type": "invalid_request_error"}
    line = {
        "id": f"x-{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 400, "body": body},
        "error": {"message": "bad request"},
    }
    return json.dumps(line).encode() + b"\n"


__all__ = ["FakeProvider", "ProviderError"]
