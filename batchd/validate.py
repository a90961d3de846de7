"""Read a claimed file: check it (name, safety, the batch file rules and limits), plan its
chunks and write them to the work folder. Synchronous (the claimer runs it in a thread), and
deterministic, so that redoing it after a crash writes the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchd.batchfile import FileLimits, ParsedFile, parse_batch_file
from batchd.chunks import plan_chunks, write_chunk
from batchd.errors import IntakeRejected, Problem
from batchd.models import Submission
from batchd.providers.base import ProviderLimits
from batchd.safe_folder import make_folders
from batchd.spool import UnsafeFile, name_allowed, open_dropped
from batchd.store.base import ChunkPlan
from batchd.workdir import WorkDir

# A file up to this size keeps its normalized lines from the parse (at most about twice this in
# memory while its chunks are written): they are written from memory instead of reading and
# parsing the file a second time. Larger files are read again, line by line.
PARSE_ONCE_UP_TO = 16 * 1024 * 1024

UNREADABLE = (
    "batchd cannot read this file (permission denied): in a shared drop folder, make it "
    "readable by the folder's group (mode 0640) before you drop it"
)


def validate_file(
    sub: Submission, processing: Path, limits: FileLimits, provider: ProviderLimits
) -> tuple[ParsedFile, list[ChunkPlan]]:
    """The parsed file and its chunks; ``IntakeRejected`` (with line numbers) when invalid."""
    if not name_allowed(sub.name):
        raise IntakeRejected(
            [Problem(0, "file name not allowed: use [A-Za-z0-9._-], ending in .jsonl")]
        )
    try:
        fd, _ = open_dropped(processing.parent, processing.name, max_bytes=limits.max_file_bytes)
    except UnsafeFile as exc:
        raise IntakeRejected([Problem(0, f"rejected: {exc}")]) from exc
    except PermissionError as exc:
        raise IntakeRejected([Problem(0, UNREADABLE)]) from exc
    os.close(fd)
    parsed = parse_batch_file(
        processing, endpoint=sub.endpoint, limits=limits, keep_lines_up_to=PARSE_ONCE_UP_TO
    )
    chunks = plan_chunks(
        parsed.normalized_sizes,
        max_requests=provider.max_requests_per_job,
        max_bytes=provider.max_bytes_per_job,
        line_numbers=parsed.line_numbers,
    )
    return parsed, chunks


def write_chunks(
    work: WorkDir, sub: Submission, processing: Path, parsed: ParsedFile, chunks: list[ChunkPlan]
) -> None:
    make_folders(work.submission(sub.id), 0o700, parents_mode=0o700)
    for chunk in chunks:
        write_chunk(
            processing, parsed, chunk, work.chunk(sub.id, chunk.index), endpoint=sub.endpoint
        )


def duplicate_reason(earlier: Submission) -> str:
    """Why content already submitted as ``earlier`` is refused (also ``batchd submit``'s)."""
    where = f"results in {earlier.results_dir}" if earlier.results_dir else earlier.state
    return (
        f"duplicate: the same content was submitted as {earlier.name} "
        f"(submission {earlier.id}, {where}); to submit it again anyway, drop it with "
        'a sidecar {"allow_duplicate": true} (batchd submit --allow-duplicate), '
        'or set duplicates = "allow" in [intake]'
    )
