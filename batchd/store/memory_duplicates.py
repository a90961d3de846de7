"""The duplicate-job verbs of ``MemoryJobStore`` (as ``sqlite_duplicates.py`` for SQLite)."""

from __future__ import annotations

from batchd.errors import StoreError
from batchd.models import Submission
from batchd.store import rules
from batchd.store.base import DuplicateJob, EventSpec
from batchd.store.memory_outbox import MemoryOutbox


class MemoryDuplicates(MemoryOutbox):
    """Mixed into ``MemoryJobStore``, which owns the dicts; events go to the outbox."""

    _duplicates: dict[str, DuplicateJob]
    _subs: dict[str, Submission]

    async def record_duplicate(self, dup: DuplicateJob, *, event: EventSpec) -> bool:
        if dup.provider_job_id in self._duplicates:
            return False
        if dup.submission_id is not None and dup.submission_id not in self._subs:
            raise StoreError(f"submission {dup.submission_id} not found")
        new = rules.build_event(
            event, now=dup.found_at, submission_id=dup.submission_id, job_id=dup.job_id
        )
        self._duplicates[dup.provider_job_id] = dup
        self._add_event(new)
        return True

    async def duplicates(self, *, submission_id: str | None = None) -> list[DuplicateJob]:
        found = [
            d
            for d in self._duplicates.values()
            if submission_id is None or d.submission_id == submission_id
        ]
        return sorted(found, key=lambda d: (d.found_at, d.provider_job_id))
