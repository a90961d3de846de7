"""Verify downloaded result files and merge a submission's results in input order.

Runs in a worker thread (blocking file I/O). Memory stays bounded by one chunk's index
(``custom_id`` -> file offset), never by the size of the result files: lines are located by a
scan and copied by seeking, so a 1 GB result file is never held in memory.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from batchd.errors import ProviderError
from batchd.models import Job, ResultCounts, ResultState
from batchd.providers.base import ResultLine
from batchd.safe_folder import Folder
from batchd.spool import PRIVATE, Modes

ParseLine = Callable[[bytes], ResultLine]


class ResultsInvalid(Exception):
    """A downloaded file does not match the job: the message says how."""


class ResultsUncounted(ResultsInvalid):
    """The files hold more (valid, distinct) lines than the job counted: downloading them
    again cannot change that, so they are accepted at once (the problem recorded)."""


UNVERIFIED = "unverified: "  # how a job's last_error starts when its files were accepted as is


@dataclass(frozen=True, slots=True)
class Located:
    file_index: int
    offset: int
    length: int


def chunk_custom_ids(chunk_path: Path) -> Iterator[str]:
    """The custom_ids of a chunk file (normalized lines), in input order."""
    with chunk_path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield str(json.loads(raw)["custom_id"])


def index_results(files: Sequence[Path], parse: ParseLine, known: set[str]) -> dict[str, Located]:
    """Scan result files; map every custom_id to where its line is. Raises ``ResultsInvalid``
    on an unparseable line, an unknown custom_id or a custom_id seen twice."""
    index: dict[str, Located] = {}
    for number, path in enumerate(files):
        if not path.exists():
            continue
        with path.open("rb") as handle:
            offset = 0
            for raw in handle:
                if raw.strip():
                    _index_line(index, raw, parse, known, Located(number, offset, len(raw)))
                offset += len(raw)
                _yield_gil(len(index))
    return index


def _index_line(
    index: dict[str, Located], raw: bytes, parse: ParseLine, known: set[str], where: Located
) -> None:
    try:
        line = parse(raw)
    except ProviderError as exc:
        raise ResultsInvalid(f"unparseable result line at byte {where.offset}: {exc}") from exc
    if line.custom_id not in known:
        raise ResultsInvalid(f"unknown custom_id {line.custom_id!r} in the results")
    if line.custom_id in index:
        raise ResultsInvalid(f"custom_id {line.custom_id!r} appears twice in the results")
    index[line.custom_id] = where


def verify_job(
    job: Job, chunk_path: Path, files: Sequence[Path], parse: ParseLine
) -> tuple[int, int]:
    """Check the downloads of one job: every custom_id known and unique, and the line count
    equal to what the provider says it completed. Returns (lines, expected)."""
    known = set(chunk_custom_ids(chunk_path))
    index = index_results(files, parse, known)
    expected = expected_lines(job)
    if expected is not None and len(index) != expected:
        lines = f"{len(index)} line{'' if len(index) == 1 else 's'}"
        problem = f"its result files held {lines} where it counted {expected}"
        raise (ResultsUncounted if len(index) > expected else ResultsInvalid)(problem)
    return len(index), expected if expected is not None else len(index)


def expected_lines(job: Job) -> int | None:
    """Lines the result files should hold, from the job's counters (None: unknown)."""
    counts = job.counts
    done = max(counts.completed, counts.succeeded + counts.failed)
    if done == 0 and counts.total == 0:
        return None if job.output_file_id or job.error_file_id else 0
    return done


def _yield_gil(count: int) -> None:
    """A worker thread parsing big files starves the event loop of the GIL; let it run."""
    if count % 256 == 0:
        time.sleep(0)


# ------------------------------------------------------------------------------ merging


@dataclass
class Tally:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    usage: Counter[str] = field(default_factory=Counter)
    error_messages: Counter[str] = field(default_factory=Counter)

    def counts(self) -> ResultCounts:
        usage = dict(sorted(self.usage.items()))
        return ResultCounts(self.succeeded, self.failed, self.missing, usage)

    def add(self, record: dict[str, Any], ok: bool) -> None:
        self.requests += 1
        if ok:
            self.succeeded += 1
            usage = (record.get("response") or {}).get("usage")
            if isinstance(usage, dict):
                self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
            return
        if record.get("status_code") is None and record.get("response") is None:
            self.missing += 1
        else:
            self.failed += 1
        self.error_messages[_error_text(record.get("error"), record.get("response"))] += 1


def _error_text(error: Any, body: Any) -> str:
    if isinstance(error, str) and error:
        return error[:200]
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:200]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return "error"


def missing_reason(job: Job) -> str:
    if job.result_state is ResultState.UNAVAILABLE:
        return f"results unavailable from the provider (job {job.state.value})"
    if job.provider_job_id is None:
        return f"not submitted (job {job.state.value}): {job.last_error or 'no provider job'}"
    if job.last_error and job.last_error.startswith(UNVERIFIED):
        detail = job.last_error.removeprefix(UNVERIFIED)
        return f"the provider returned no result for this request (job {job.state.value}; {detail})"
    return f"no result returned (job {job.state.value})"


def record_for(custom_id: str, line: ResultLine | None, job: Job) -> tuple[dict[str, Any], bool]:
    if line is None:
        return (
            {
                "custom_id": custom_id,
                "status_code": None,
                "response": None,
                "error": {"message": missing_reason(job)},
            },
            False,
        )
    return (
        {
            "custom_id": custom_id,
            "status_code": line.status_code,
            "response": line.body,
            "error": line.error,
        },
        line.ok,
    )


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class JobFiles:
    job: Job
    chunk: Path
    files: tuple[Path, ...]  # output, errors (either may not exist)


def merge(jobs: Sequence[JobFiles], parse: ParseLine, results: BinaryIO, errors: BinaryIO) -> Tally:
    """Write one record per request, in input order, to ``results``; failures also to
    ``errors``."""
    tally = Tally()
    for item in jobs:
        known = set(chunk_custom_ids(item.chunk))
        index = _index_lenient(item.files, parse, known)
        handles = [p.open("rb") if p.exists() else None for p in item.files]
        try:
            for custom_id in chunk_custom_ids(item.chunk):
                line = _read_line(handles, index.get(custom_id), parse)
                record, ok = record_for(custom_id, line, item.job)
                data = _dump(record)
                results.write(data)
                if not ok:
                    errors.write(data)
                tally.add(record, ok)
                _yield_gil(tally.requests)
        finally:
            for handle in handles:
                if handle is not None:
                    handle.close()
    return tally


def _index_lenient(files: Sequence[Path], parse: ParseLine, known: set[str]) -> dict[str, Located]:
    """Like ``index_results`` but keeps what it can: used when merging files that failed
    verification repeatedly (their problems are reported in the summary)."""
    try:
        return index_results(files, parse, known)
    except ResultsInvalid:
        index: dict[str, Located] = {}
        for number, path in enumerate(files):
            if path.exists():
                _index_file_lenient(index, path, number, parse, known)
        return index


def _index_file_lenient(
    index: dict[str, Located], path: Path, number: int, parse: ParseLine, known: set[str]
) -> None:
    with path.open("rb") as handle:
        offset = 0
        for raw in handle:
            try:
                line = parse(raw) if raw.strip() else None
            except ProviderError:
                line = None
            if line is not None and line.custom_id in known:
                index.setdefault(line.custom_id, Located(number, offset, len(raw)))
            offset += len(raw)


def _read_line(
    handles: Sequence[BinaryIO | None], where: Located | None, parse: ParseLine
) -> ResultLine | None:
    if where is None:
        return None
    handle = handles[where.file_index]
    if handle is None:
        return None
    handle.seek(where.offset)
    return parse(handle.read(where.length))


def write_results(
    directory: Path, jobs: Sequence[JobFiles], parse: ParseLine, *, modes: Modes = PRIVATE
) -> Tally:
    """Write results.jsonl and errors.jsonl atomically into ``directory``. Temp files left
    there by a writer that was killed (these or summary.json's) are removed first. The folder
    and its parent (``done/``) are opened without following links (``UnsafeFolder``)."""
    with Folder.open(directory, below=2, mode=modes.folder) as folder:  # done/ and its run
        folder.chmod(modes.folder)
        folder.remove_stale_temp_files()
        with (
            folder.writer("results.jsonl", mode=modes.file) as results,
            folder.writer("errors.jsonl", mode=modes.file) as errors,
        ):
            return merge(jobs, parse, results, errors)
