"""Input files of the submitter: their names, and uploads orphaned by a crash found again.

Uploads are named ``batchd-<job id>.jsonl``, so that after a crash between the upload and its
record the file is found by name (``find_files``) and reused instead of uploaded twice.
"""

from __future__ import annotations

import structlog

from batchd.errors import ProviderError
from batchd.models import Job
from batchd.providers.base import BatchProvider

log = structlog.get_logger(__name__)


def upload_name(job_id: str) -> str:
    return f"batchd-{job_id}.jsonl"


async def find_upload(provider: BatchProvider, job: Job, name: str, size: int) -> str | None:
    """Reuse an upload orphaned by a crash (``name``, ``size`` bytes: the staged file); delete
    partial or surplus copies."""
    keep: str | None = None
    for ref in await provider.find_files(name.removesuffix(".jsonl")):
        if ref.filename != name:
            continue
        if keep is None and ref.size_bytes == size:
            keep = ref.id
            log.info("submit.upload_adopted", job_id=job.id, file_id=ref.id)
        else:
            await delete_quietly(provider, ref.id)
    return keep


async def delete_quietly(provider: BatchProvider, file_id: str) -> None:
    try:
        await provider.delete_file(file_id)
    except ProviderError as exc:
        log.warning("submit.orphan_delete_failed", file_id=file_id, error=str(exc))
