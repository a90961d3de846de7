"""Results that a provider serves as files (an output file and an error file, such as
Mistral's and OpenAI's): ``fetch_results`` and ``delete_results`` for them, on top of the
provider's ``download_file`` and ``delete_file``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from batchd.errors import NotFound, ProviderError
from batchd.providers.base import Fetched, ResultRefs

log = structlog.get_logger(__name__)

Download = Callable[[str, Path], Awaitable[int]]
Delete = Callable[[str], Awaitable[None]]
NAMES = ("output.jsonl", "errors.jsonl")


async def fetch_result_files(download: Download, refs: ResultRefs, folder: Path) -> list[Fetched]:
    """Download the output and error files the job has into ``folder`` (0700); a file the job
    does not have is removed from there, so the folder holds exactly this job's results."""
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    fetched = []
    for name, file_id in zip(NAMES, (refs.output_file, refs.error_file), strict=True):
        path = folder / name
        if file_id:
            fetched.append(Fetched(path, await download(file_id, path), file_id))
        else:
            await asyncio.to_thread(path.unlink, missing_ok=True)
    return fetched


async def delete_result_files(delete: Delete, refs: ResultRefs) -> list[str]:
    """Delete the job's output and error files; return the ids deleted (one already gone
    counts as deleted). A file that cannot be deleted is logged and left."""
    deleted = []
    for file_id in (refs.output_file, refs.error_file):
        if not file_id:
            continue
        try:
            await delete(file_id)
        except NotFound:
            pass
        except ProviderError as exc:
            log.warning("provider.file_not_deleted", file_id=file_id, error=str(exc))
            continue
        deleted.append(file_id)
    return deleted
