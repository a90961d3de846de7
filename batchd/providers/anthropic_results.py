"""A message batch's results, downloaded as Anthropic serves them (one JSONL stream, the ids
batchd sent), then rewritten with the user's custom_ids (read back from the chunk by each
request's index). Blocking: run in a worker thread.

A line whose id is not one of this job's (``staging.index_of``) means the batch is not this
job's: a provisional adoption was wrong (``Misadopted``); the provider then looks for the
batch that holds the job's requests (see ``providers.anthropic``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from batchd.errors import ProviderPermanent
from batchd.providers.staging import index_of, read_requests

RESULTS_NAME: Final = "results.jsonl"


class Misadopted(ProviderPermanent):
    """The batch's results carry another job's ids."""


def owned_by(job_id: str, first_line: bytes) -> bool | None:
    """Whether a results stream whose first line is ``first_line`` is ``job_id``'s (``None``:
    the line says nothing, such as an empty stream)."""
    try:
        custom_id = json.loads(first_line).get("custom_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(custom_id, str):
        return None
    return index_of(job_id, custom_id) is not None


def map_back(raw: Path, chunk: Path, job_id: str, dest: Path) -> int:
    """Write ``raw`` to ``dest`` with the user's custom_ids (whole or absent: a temporary file,
    fsynced, renamed); return its size. Raises ``Misadopted`` on a line of another job."""
    users = [request.custom_id for request in read_requests(chunk)]
    temp = dest.with_name(f".{dest.name}.part")
    try:
        with raw.open("rb") as source, temp.open("wb") as out:
            for number, line in enumerate(source, start=1):
                if line.strip():
                    out.write(_mapped(line, users, job_id, number))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
    return dest.stat().st_size


def _mapped(line: bytes, users: list[str], job_id: str, number: int) -> bytes:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return line if line.endswith(b"\n") else line + b"\n"  # the collector reports it
    sent = data.get("custom_id") if isinstance(data, dict) else None
    index = index_of(job_id, sent) if isinstance(sent, str) else None
    if index is None or index >= len(users):
        raise Misadopted(
            f"result line {number} has custom_id {str(sent)[:80]!r}, not one batchd sent for "
            f"job {job_id}: this batch is not the job's"
        )
    data["custom_id"] = users[index]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
