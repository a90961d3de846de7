"""Split a validated batch file into provider-sized chunks, and write each chunk's file.

``plan_chunks`` is pure. ``write_chunk`` writes the normalized lines the parse kept, or else
re-reads the input (from the byte offsets the parse recorded); it writes the chunk's requests
as neutral request lines (``{"custom_id", "body"}``, ``providers.base.ChunkInput``)
atomically, and refuses with ``IntakeRejected`` a file that no longer matches its
``ParsedFile``. Each provider encodes them in its own format at submit time
(``BatchProvider.encode_input``, or its create for inline staging). The limits are on the
neutral lines: a provider whose encoding adds bytes keeps that margin in its
``max_bytes_per_job``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from batchd.batchfile import BadLine, Line, ParsedFile, encode_request, read_lines, read_request
from batchd.errors import IntakeRejected, Problem
from batchd.spool import fsync_dir
from batchd.store.base import ChunkPlan

_UNBOUNDED: Final = sys.maxsize // 2  # write_chunk re-reads lines the parse already bounded


def plan_chunks(
    normalized_sizes: Sequence[int],
    *,
    max_requests: int,
    max_bytes: int,
    line_numbers: Sequence[int] | None = None,
) -> list[ChunkPlan]:
    """Contiguous chunks in input order, each within both limits, as few as possible (greedy
    is optimal here). A request larger than ``max_bytes`` on its own is ``IntakeRejected``
    (line numbers from ``line_numbers``, else the request's 1-based position)."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests and max_bytes must be positive")
    lines = line_numbers if line_numbers is not None else range(1, len(normalized_sizes) + 1)
    oversized = [
        Problem(lines[i], f"request of {size} bytes exceeds the provider's {max_bytes} per job")
        for i, size in enumerate(normalized_sizes)
        if size > max_bytes
    ]
    if oversized:
        raise IntakeRejected(oversized[:50], truncated=len(oversized) > 50)
    chunks: list[ChunkPlan] = []
    start = count = total = 0
    for i, size in enumerate(normalized_sizes):
        if count and (count >= max_requests or total + size > max_bytes):
            chunks.append(ChunkPlan(len(chunks), start, count, total))
            start, count, total = i, 0, 0
        count += 1
        total += size
    if count:
        chunks.append(ChunkPlan(len(chunks), start, count, total))
    return chunks


def write_chunk(
    path: Path, parsed: ParsedFile, chunk: ChunkPlan, dest: Path, *, endpoint: str
) -> int:
    """Write the chunk's requests to ``dest`` as neutral lines (OpenAI ``method`` and ``url``
    dropped, assigned ids filled in), atomically: a 0600 temp file, fsync, rename, fsync
    of the folder. Same input, same bytes. Returns the byte count. ``IntakeRejected`` if the
    file no longer matches ``parsed``."""
    temp = dest.with_name(f".{dest.name}.part")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            written = 0
            for data in _chunk_lines(path, parsed, chunk, endpoint):
                out.write(data)
                written += len(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return written


def _chunk_lines(
    path: Path, parsed: ParsedFile, chunk: ChunkPlan, endpoint: str
) -> Iterator[bytes]:
    index, end = chunk.line_start, chunk.line_start + chunk.line_count
    if parsed.normalized is not None:  # the lines the parse kept: the file is not read again
        if end > len(parsed.normalized):
            raise ValueError(f"chunk {chunk.index} ends after the file's last request")
        yield b"".join(parsed.normalized[index:end])
        return
    with path.open("rb") as handle:
        number = offset = 0
        if len(parsed.byte_offsets) == parsed.request_count and index < end:
            number, offset = parsed.line_numbers[index] - 1, parsed.byte_offsets[index]
            handle.seek(offset)
        for line in read_lines(handle, _UNBOUNDED, number=number, offset=offset):
            if index >= end:
                return
            if line.number == parsed.line_numbers[index]:
                yield _rebuild(line, parsed, index, endpoint)
                index += 1
    if index < end:
        raise _changed(0)


def _rebuild(line: Line, parsed: ParsedFile, index: int, endpoint: str) -> bytes:
    """One request's normalized line, checked against what the parse recorded."""
    try:
        custom_id, body, fast = read_request(line.content or b"", endpoint)
        data = encode_request(parsed.custom_ids[index], body, fast)
    except (BadLine, ValueError):
        raise _changed(line.number) from None
    if custom_id not in (None, parsed.custom_ids[index]):
        raise _changed(line.number)
    if len(data) != parsed.normalized_sizes[index]:
        raise _changed(line.number)
    return data


class FileChanged(IntakeRejected):
    """The file no longer matches what its parse recorded: it is still being written."""


def _changed(line: int) -> IntakeRejected:
    return FileChanged([Problem(line, "the file changed after it was validated")])
