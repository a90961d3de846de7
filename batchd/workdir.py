"""batchd's private work folder (under ``data_dir``): chunk files to upload and downloaded
results waiting to be merged. Names come from ids, never from user input."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkDir:
    root: Path  # <data_dir>/work

    def submission(self, submission_id: str) -> Path:
        return self.root / submission_id

    def chunk(self, submission_id: str, index: int) -> Path:
        return self.submission(submission_id) / f"chunk-{index:04d}.jsonl"

    def output(self, submission_id: str, job_id: str) -> Path:
        return self.submission(submission_id) / f"{job_id}.output.jsonl"

    def errors(self, submission_id: str, job_id: str) -> Path:
        return self.submission(submission_id) / f"{job_id}.errors.jsonl"

    def remove(self, submission_id: str) -> None:
        shutil.rmtree(self.submission(submission_id), ignore_errors=True)

    def submission_ids(self) -> list[str]:
        """The submissions that have a work folder (sorted)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
