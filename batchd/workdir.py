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

    def staged(self, submission_id: str, index: int) -> Path:
        """Scratch for a chunk encoded in a provider's format before its upload
        (``BatchProvider.encode_input``), removed once uploaded."""
        return self.submission(submission_id) / f"chunk-{index:04d}.staged.jsonl"

    def results(self, submission_id: str, job_id: str) -> Path:
        """The folder a job's results are fetched into (``BatchProvider.fetch_results``)."""
        return self.submission(submission_id) / job_id

    def result_files(self, submission_id: str, job_id: str) -> tuple[Path, ...]:
        """The job's fetched results files, by name (not the temporary dotfiles of a fetch
        that was interrupted)."""
        folder = self.results(submission_id, job_id)
        if not folder.is_dir():
            return ()
        return tuple(sorted(p for p in folder.glob("*.jsonl") if not p.name.startswith(".")))

    def remove(self, submission_id: str) -> None:
        shutil.rmtree(self.submission(submission_id), ignore_errors=True)

    def submission_ids(self) -> list[str]:
        """The submissions that have a work folder (sorted)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
