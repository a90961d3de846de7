"""The claims half of the ``JobStore`` seam (``JobStore`` inherits ``ClaimVerbs``): which
instance works on a job, finishes a submission, or does a named task now. The rules are
``store/leases.py``'s (pure, shared by every implementation); an owner is a host id
(``wiring.host_id``), a lease a time in seconds since the epoch.

Every implementation decides with those rules and writes a claim as a conditional update on
the row's ``version`` (or its engine's equivalent: SQLite writes under its database-wide
write lock and still checks the version), so two processes on one database never both hold
the same thing. The behaviour suite (``tests/integration/store/test_claims.py``,
``test_task_leases.py``) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from batchd.models import Job, Submission
from batchd.store.leases import Stage


class ClaimVerbs(Protocol):
    async def claim_due(
        self,
        stage: Stage,
        owner: str,
        lease_s: float,
        *,
        now: float,
        limit: int = 100,
        provider: str | None = None,
        due_only: bool = True,
    ) -> list[Job]:
        """Take the due jobs of ``stage`` (``leases.in_stage``; ``next_attempt_at <= now``
        unless ``due_only`` is False: the tracker's sweep) that no other owner holds, ordered by
        ``next_attempt_at`` then id: each is returned held by ``owner`` for at least ``lease_s /
        2`` more (renewed to ``now + lease_s``, its version bumped, when it had less:
        ``leases.renewal_due``)."""
        ...

    async def reschedule_jobs(self, job_ids: Sequence[str], next_attempt_at: float) -> int:
        """Set ``next_attempt_at`` on many jobs in one transaction (the tracker's sweep), without
        touching their state or ``updated_at``. Unknown ids are skipped. Returns rows changed."""
        ...

    async def claim_submission(
        self, submission_id: str, owner: str, lease_s: float, *, now: float
    ) -> Submission | None:
        """Hold an ACTIVE submission for finishing (``leases.claim_submission``): the
        submission held by ``owner`` until at least ``now + lease_s / 2`` (renewed to ``now +
        lease_s``, its version bumped, when it had less), or None when it is not ACTIVE (or
        unknown) or another owner holds it. ``finish_submission(..., owner=...)`` then refuses
        with ``LeaseLost`` if the lease was taken over meanwhile."""
        ...

    async def claim_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        """Take or keep the named lease ``name`` (``leases.claim_task``): True when ``owner``
        holds it now (until at least ``now + lease_s / 2``), False when another owner holds
        it and its lease has not run out. A lease never taken exists implicitly (free)."""
        ...

    async def renew_task(self, name: str, owner: str, lease_s: float, *, now: float) -> bool:
        """Extend ``owner``'s lease ``name`` to ``now + lease_s``: True when ``owner`` still
        holds it (even past its end, if nobody took it over), False otherwise (nothing
        changed)."""
        ...

    async def release_task(self, name: str, owner: str) -> bool:
        """Free the lease ``name`` when ``owner`` holds it (another owner may take it at once);
        False (nothing changed) when ``owner`` does not hold it."""
        ...
