"""Notice every state change of every open job quickly, with as few provider calls as possible.

Two ways to refresh a provider's open jobs, chosen per pass:

* **per job** (few jobs): each job has its own next poll time; the interval starts at
  ``poll_initial_s``, doubles while nothing moves up to ``poll_max_s``, resets when the state or
  the counters move, and is jittered.
* **sweep** (more than ``list_threshold`` open jobs): one list call (status filter plus batchd's
  instance tag) covers a page of 100 jobs; only jobs that left the active list are fetched one by
  one. Sweeps run every ``poll_initial_s``, stretched so that a sweep uses at most half the
  provider's request budget.

Transitions are compare-and-set on the store with their event in the same transaction. A 429
slows every poll for that provider; 401/403 pauses it; a 404 on a job makes it LOST. Cancel
requests are sent here too, and retried each pass until the provider shows cancelling.

``batchd cancel`` runs in another process and only records the intent in the store, so while
the tracker waits for its next pass it looks for new cancel intents every ``cancel_poll_s``
(one indexed query) and starts a pass at once when it finds one: a cancel is sent within about
half a second, not at the next poll.

Duplicates (``duplicates.py``): a sweep checks every listed job it did not expect, and every
``duplicate_scan_s`` while a provider has open jobs, one listing (every state, this instance's
tag, created since the oldest open job; stretched to use at most a tenth of the request budget)
finds the duplicates that are not active any more; a duplicate is cancelled at once, recorded
and announced.

Several instances on one store (``store/claim_verbs.py``): per-job polls take their jobs by
``claim_due``; what covers a whole provider is done by one instance at a time under a named
lease (``claim_task``): its sweep (``sweep:<provider>``), its duplicate scan
(``duplicates:<provider>``) and the cancels sent to it (``cancel:<provider>``). The tag on
provider jobs is the deployment's id (``instance_id``), the owner of claims this host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from batchd import metrics
from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import AuthError, NotFound, ProviderError, RateLimited, StaleState
from batchd.health import ProviderGate
from batchd.loops import Waker, gather_bounded, report_progress
from batchd.models import ACTIVE, LOCAL, TERMINAL, Job, JobState
from batchd.providers.base import BatchProvider, JobSnapshot, TagQuery
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LEASE_S
from batchd.tracking import (
    CANCELLABLE,
    CLOCK_SKEW_S,
    LISTABLE,
    MAX_WAIT_S,
    TrackPolicy,
    duplicate_scan_interval,
    has_moved,
    next_interval,
    oldest,
    snapshot_fields,
    state_event,
    sweep_interval,
)

log = structlog.get_logger(__name__)

# The pure decisions live in batchd.tracking; named here too for the tracker's callers.
__all__ = [
    "CLOCK_SKEW_S",
    "TrackPolicy",
    "Tracker",
    "duplicate_scan_interval",
    "next_interval",
    "sweep_interval",
]


@dataclass
class _Sweeps:
    due_at: dict[str, float] = field(default_factory=dict)
    scan_at: dict[str, float] = field(default_factory=dict)  # the next duplicate scan


class Tracker:
    name = "tracker"

    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, BatchProvider],
        *,
        clock: Clock,
        instance_id: str,
        owner: str | None = None,
        policy: TrackPolicy | None = None,
        gate: ProviderGate | None = None,
        on_terminal: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._providers = dict(providers)
        self._clock = clock
        self._instance_id = instance_id  # the tag on provider jobs: the deployment's id
        self._owner = owner or instance_id  # holds claims: this host's id
        self._policy = policy or TrackPolicy()
        self._gate = gate or ProviderGate()
        self._on_terminal = on_terminal
        self._rng = rng or random.Random()
        self._sweeps = _Sweeps()
        self._wake = Waker()
        self._cancels_seen: set[str] = set()  # cancel intents the last pass acted on
        self._duplicates = Duplicates(store, clock=clock, instance_id=instance_id)

    def set_providers(self, providers: Mapping[str, BatchProvider]) -> None:
        self._providers = dict(providers)
        self._wake.set()

    def set_policy(self, policy: TrackPolicy) -> None:
        self._policy = policy

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the pass
    async def run_once(self) -> int:
        now = self._clock.now()
        done = await self._send_cancels(now)
        for name in sorted(self._providers):
            if self._gate.is_open(name, now):
                await self._scan_duplicates(name, now)
            if self._sweeps.due_at.get(name, 0.0) > now:
                continue  # sweep mode, between sweeps: the next sweep covers every open job
            if self._gate.is_open(name, now):
                done += await self._refresh_provider(name, now)
        return done

    async def wait(self) -> None:
        # Per provider: a paused provider's jobs and sweeps are due only when the pause ends.
        ready = [self._gate.ready_at(n, due) for n, due in self._sweeps.due_at.items()]
        for name in sorted(set(self._providers) - set(self._sweeps.due_at)):  # sweeps: above
            first = await self._store.list_jobs(states=sorted(ACTIVE), provider=name, limit=1)
            if first:
                ready.append(self._gate.ready_at(name, first[0].next_attempt_at))
        delay = 5.0 if not ready else min(ready) - self._clock.now()
        timer = asyncio.get_running_loop().time
        until = timer() + min(MAX_WAIT_S, max(0.05, delay))
        while (left := until - timer()) > 0:
            if await self._wake.wait(min(left, self._cancel_poll_s())):
                break
            if await self._new_cancel_intent():
                log.debug("tracker.cancel_noticed")
                break

    def _cancel_poll_s(self) -> float:
        return max(0.05, self._policy.cancel_poll_s)

    async def _new_cancel_intent(self) -> bool:
        """A cancel was requested (by another process) that no pass has acted on yet."""
        wanted = await self._store.list_jobs(states=CANCELLABLE, cancel_requested=True, limit=100)
        return any(j.id not in self._cancels_seen for j in wanted)

    async def _refresh_provider(self, name: str, now: float) -> int:
        """Poll the due jobs, or sweep every open job, that this instance holds (claim_due); a
        sweep only while this instance holds the provider's sweep lease."""
        open_jobs = await self._store.list_jobs(states=sorted(ACTIVE), provider=name)
        sweep = len(open_jobs) > self._policy.list_threshold
        if sweep:
            self._sweeps.due_at[name] = now + sweep_interval(len(open_jobs), self._policy, name)
            if not await self._holds(f"sweep:{name}", now):
                return 0  # another instance sweeps this provider
        mine = await self._store.claim_due(
            "track", self._owner, LEASE_S, now=now, provider=name,
            limit=len(open_jobs), due_only=not sweep,
        )  # fmt: skip
        if sweep:
            return await self._sweep(name, mine)
        self._sweeps.due_at.pop(name, None)
        await self._bounded(self._poll(name, job) for job in mine)
        return len(mine)

    # ------------------------------------------------------------------ sweep
    async def _sweep(self, name: str, open_jobs: Sequence[Job]) -> int:
        provider = self._providers[name]
        by_id = {j.provider_job_id: j for j in open_jobs if j.provider_job_id}
        seen: set[str] = set()
        query = TagQuery(
            {"batchd": self._instance_id},
            states=LISTABLE,
            created_after=oldest(open_jobs),
            page_size=self._policy.page_size,
        )
        try:
            async for snap in provider.find_tagged(query):
                report_progress()
                job = by_id.get(snap.id)
                if job is None:
                    await self._duplicates.check(name, provider, snap)
                elif snap.id not in seen:
                    seen.add(snap.id)
                    await self._apply(job, snap, schedule=False)
        except ProviderError as exc:
            await self._provider_failed(name, exc)
            return 0
        departed = [j for pid, j in by_id.items() if pid not in seen]
        await self._bounded(self._poll(name, job) for job in departed)
        steady = [j.id for j in open_jobs if j.provider_job_id in seen]
        await self._store.reschedule_jobs(steady, self._sweeps.due_at[name])
        log.debug("tracker.swept", provider=name, open=len(open_jobs), departed=len(departed))
        return len(open_jobs)

    # ------------------------------------------------------------------ duplicates
    async def _scan_duplicates(self, name: str, now: float) -> None:
        """Every ``duplicate_scan_s``: list this instance's jobs created since the oldest open
        job (any state) and settle the duplicates among them."""
        due = self._sweeps.scan_at.setdefault(name, now + self._policy.duplicate_scan_s)
        if due > now:
            return
        self._sweeps.scan_at[name] = now + self._policy.duplicate_scan_s
        if not await self._holds(f"duplicates:{name}", now):
            return  # another instance scans this provider
        open_jobs = await self._store.list_jobs(states=sorted(LOCAL | ACTIVE), provider=name)
        if not open_jobs:
            return
        provider = self._providers[name]
        query = TagQuery(
            {"batchd": self._instance_id},
            created_after=min(j.created_at for j in open_jobs) - CLOCK_SKEW_S,
            page_size=self._policy.page_size,
        )
        listed = 0
        try:
            async for snap in provider.find_tagged(query):
                report_progress()
                listed += 1
                await self._duplicates.check(name, provider, snap)
        except ProviderError as exc:
            await self._provider_failed(name, exc)
        pages = math.ceil(listed / max(1, self._policy.page_size))
        self._sweeps.scan_at[name] = now + duplicate_scan_interval(pages, self._policy)

    # ------------------------------------------------------------------ per job
    async def _poll(self, name: str, job: Job) -> None:
        provider = self._providers[name]
        try:
            snap = await provider.get_job(job.provider_job_id or "")
        except NotFound:
            await self._lost(job)
            return
        except ProviderError as exc:
            await self._provider_failed(name, exc, job)
            return
        await self._apply(job, snap, schedule=True)

    async def _apply(self, job: Job, snap: JobSnapshot, *, schedule: bool) -> bool:
        """Record what the provider says (pure decision, one store call). False when the job
        moved meanwhile or another instance holds it (nothing recorded)."""
        moved = has_moved(job, snap)
        if not moved and not schedule:
            return True
        now = self._clock.now()
        interval = next_interval(job.poll_interval_s, moved, self._policy)
        # A terminal job is due for collection at once; others at their next poll.
        due_at = now if snap.state in TERMINAL else now + interval * self._rng.uniform(0.8, 1.2)
        fields = snapshot_fields(snap) if moved else {}
        event = None
        if snap.state is not job.state:
            event = state_event(job, snap)
            if snap.state is JobState.UNKNOWN:
                log.warning("tracker.unknown_status", job_id=job.id, raw_status=snap.raw_status)
        try:
            await self._store.transition_job(
                job.id,
                job.state,
                snap.state,
                now=now,
                owner=self._owner,
                event=event,
                poll_interval_s=interval,
                next_attempt_at=due_at,
                **fields,
            )
        except StaleState:
            return False  # somebody else moved it (a cancel from the CLI): next pass sees it
        if snap.state in TERMINAL:
            metrics.detected(job.provider, snap.completed_at, now)
            self._on_terminal()
        return True

    async def _lost(self, job: Job) -> None:
        log.error("tracker.job_lost", job_id=job.id, provider_job_id=job.provider_job_id)
        await self._store.transition_job(
            job.id,
            job.state,
            JobState.LOST,
            now=self._clock.now(),
            owner=self._owner,
            event=EventSpec(
                "batch.lost",
                {
                    "submission_id": job.submission_id,
                    "job_id": job.id,
                    "provider_job_id": job.provider_job_id,
                    "state": JobState.LOST.value,
                },
            ),
        )
        self._on_terminal()

    # ------------------------------------------------------------------ cancel
    async def _send_cancels(self, now: float) -> int:
        wanted = await self._store.list_jobs(states=CANCELLABLE, cancel_requested=True)
        self._cancels_seen = {j.id for j in wanted}
        wanted = [j for j in wanted if self._gate.is_open(j.provider, now)]
        wanted = [j for j in wanted if j.provider in self._providers]
        for name in sorted({j.provider for j in wanted}):
            if not await self._holds(f"cancel:{name}", now):  # another instance sends them
                wanted = [j for j in wanted if j.provider != name]
        await self._bounded(self._cancel(job) for job in wanted)
        return len(wanted)

    async def _holds(self, task: str, now: float) -> bool:
        """Whether this instance does ``task`` now (takes or keeps its named lease)."""
        return await self._store.claim_task(task, self._owner, LEASE_S, now=now)

    async def _cancel(self, job: Job) -> None:
        try:
            snap = await self._providers[job.provider].cancel_job(job.provider_job_id or "")
        except NotFound:
            await self._lost(job)
            return
        except ProviderError as exc:
            await self._provider_failed(job.provider, exc, job)
            return
        log.info("tracker.cancel_sent", job_id=job.id, provider_job_id=job.provider_job_id)
        if not await self._apply(job, snap, schedule=True):
            # Held by another instance (or moved): its holder polls it at its next pass.
            await self._store.reschedule_jobs([job.id], self._clock.now())

    # ------------------------------------------------------------------ failures
    async def _provider_failed(self, name: str, exc: ProviderError, job: Job | None = None) -> None:
        now = self._clock.now()
        self._gate.record_error(name, str(exc))
        if isinstance(exc, AuthError):
            if self._gate.pause_for_auth(name, now, str(exc)):
                await self._store.append_event(
                    EventSpec("provider.auth_failed", {"provider": name, "error": str(exc)}),
                    now=now,
                )
            return
        if isinstance(exc, RateLimited):
            slow_s = max(exc.retry_after_s or 0.0, self._policy.rate_limit_slowdown_s)
            self._gate.slow_down(name, now + slow_s)
            log.warning("tracker.rate_limited", provider=name, slow_down_s=slow_s)
            return
        log.warning("tracker.poll_failed", provider=name, error=str(exc))
        if job is not None:
            interval = next_interval(job.poll_interval_s, False, self._policy)
            with contextlib.suppress(StaleState):
                await self._store.transition_job(
                    job.id,
                    job.state,
                    job.state,
                    now=now,
                    owner=self._owner,
                    next_attempt_at=now + interval,
                    poll_interval_s=interval,
                    last_error=str(exc),
                )

    async def _bounded(self, calls: Iterable[Awaitable[None]]) -> None:
        async def run(call: Awaitable[None]) -> None:
            await call

        await gather_bounded(calls, run, limit=self._policy.concurrency)
