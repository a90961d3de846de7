"""The create body of a message batch, ``{"requests":[{"custom_id","params"},...]}``, encoded
from a chunk file line by line, never built in memory: one pass measures it (the request
count and the byte size, for the limits and ``Content-Length``), a second produces it in
blocks as it is sent. Both passes give the same bytes (the encoding is a pure function of the
chunk). Every request is sent under batchd's own id (``staging.indexed_id``: the job id and
the request's index), which carries the job in every result line and lifts Anthropic's
custom_id rule (1 to 64 characters of ``[A-Za-z0-9_-]``) from users. Blocking: run in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from batchd.providers.anthropic_wire import request_line
from batchd.providers.base import ChunkInput
from batchd.providers.staging import indexed_id, read_requests

PREFIX: Final = b'{"requests":['
SUFFIX: Final = b"]}"
BLOCK_BYTES: Final = 1024 * 1024
MAX_REQUESTS: Final = 100_000
MAX_BODY_BYTES: Final = 256 * 1000 * 1000  # 256 MB (decimal, to be safe)


def encoded(chunk: ChunkInput) -> Iterator[bytes]:
    """Each request of the chunk as one element of ``requests`` (no separator)."""
    for request in read_requests(chunk.path):
        yield request_line(indexed_id(chunk.job_id, request.index), request.body, chunk.model)


def measure(chunk: ChunkInput) -> tuple[int, int]:
    """``(requests, body bytes)`` of the create body."""
    count = size = 0
    for item in encoded(chunk):
        count += 1
        size += len(item)
    return count, len(PREFIX) + size + max(0, count - 1) + len(SUFFIX)


def too_large(count: int, size_bytes: int) -> str | None:
    """Why a body cannot be one batch (``None``: it can)."""
    if count == 0:
        return "the chunk holds no request"
    if count > MAX_REQUESTS:
        return f"{count:,} requests (a batch holds at most {MAX_REQUESTS:,})"
    if size_bytes > MAX_BODY_BYTES:
        return f"{size_bytes:,} bytes (a batch is at most 256 MB)"
    return None


def blocks(chunk: ChunkInput) -> Iterator[bytes]:
    """The create body in blocks of about ``BLOCK_BYTES``."""
    pending = [PREFIX]
    size = len(PREFIX)
    for index, item in enumerate(encoded(chunk)):
        if index:
            pending.append(b",")
        pending.append(item)
        size += len(item) + 1
        if size >= BLOCK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(SUFFIX)
    yield b"".join(pending)
