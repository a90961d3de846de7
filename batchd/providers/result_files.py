"""Results that a provider serves as files (an output file and an error file, such as
Mistral's): ``fetch_results`` for them, on top of the provider's ``download_file``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from batchd.providers.base import Fetched, ResultRefs

Download = Callable[[str, Path], Awaitable[int]]
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
