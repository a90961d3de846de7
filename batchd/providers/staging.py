"""A job's requests on their way to a provider: the neutral lines of a chunk, read back, and
written in a provider's own line format (for the providers that encode before uploading).

A chunk file (``ChunkInput.path``) holds one neutral request per line, ``{"custom_id": str,
"body": {...}}``, written at intake (``batchd.chunks``). Each provider encodes them at submit
time: Mistral's input format is the neutral one (the chunk is uploaded as it is); OpenAI adds
``method`` and ``url``; Anthropic sends ``{"custom_id", "params"}`` inline, with ids of its own
(``indexed_id``), mapped back when its results are fetched.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from batchd.providers.base import ChunkInput

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class NeutralRequest:
    index: int  # 0-based position in the chunk
    custom_id: str  # the user's (or the one batchd assigned at intake)
    body: dict[str, Any]


Encode = Callable[[NeutralRequest], bytes]  # one request as one line, newline included


def read_requests(path: Path) -> Iterator[NeutralRequest]:
    """The requests of a chunk file, in order (blank lines skipped)."""
    with path.open("rb") as handle:
        index = 0
        for raw in handle:
            if not raw.strip():
                continue
            obj = json.loads(raw)
            yield NeutralRequest(index, str(obj["custom_id"]), obj["body"])
            index += 1


def dump_line(obj: object) -> bytes:
    """Compact JSON, UTF-8 (not ASCII-escaped), newline-terminated: how batchd writes lines."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def write_encoded(chunk: ChunkInput, dest: Path, encode: Encode) -> Path:
    """Write every request of ``chunk`` encoded by ``encode`` to ``dest``, whole or absent: a
    0600 temporary file, fsynced, renamed. Returns ``dest``."""
    temp = dest.with_name(f".{dest.name}.part")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for request in read_requests(chunk.path):
                out.write(encode(request))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest


def indexed_id(job_id: str, index: int) -> str:
    """A custom_id a provider may send instead of the user's: ``<job id>-<index>``, only
    ``[A-Za-z0-9_-]`` and at most 64 characters (Anthropic's rule), unique within the job and
    carrying the job it belongs to. ``index_of`` reads it back."""
    return f"{_prefix(job_id)}-{index}"


def index_of(job_id: str, sent: str) -> int | None:
    """The request index an ``indexed_id`` of ``job_id`` names; None for any other id."""
    head, _, tail = sent.rpartition("-")
    if head != _prefix(job_id) or not tail.isdigit() or tail != str(int(tail)):
        return None
    return int(tail)


def _prefix(job_id: str) -> str:
    return _UNSAFE.sub("_", job_id)[:40]
