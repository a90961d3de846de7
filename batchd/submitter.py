"""The submit loop: each pass claims the jobs due for submission (``claim_due("submit")``) and
runs each one's next step (``submit_steps.SubmitSteps``: the exactly-once rules) with bounded
concurrency; a step that fails waits and retries without stopping the others.

A 401/403 pauses submission for that provider (one ``provider.auth_failed`` event) instead of
burning through the queue; a reload or ``auth_pause_s`` later one job probes again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import AuthError, ProviderError, RateLimited
from batchd.health import ProviderGate
from batchd.loops import Waker, gather_bounded
from batchd.models import LOCAL, Job
from batchd.providers.base import BatchProvider
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LEASE_S
from batchd.submit_steps import SubmitPolicy, SubmitSteps, job_metadata
from batchd.workdir import WorkDir

__all__ = ["SubmitPolicy", "Submitter", "job_metadata"]

log = structlog.get_logger(__name__)


class Submitter(SubmitSteps):
    name = "submitter"

    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, BatchProvider],
        *,
        work: WorkDir,
        clock: Clock,
        instance_id: str,
        owner: str | None = None,
        policy: SubmitPolicy | None = None,
        gate: ProviderGate | None = None,
        on_created: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._providers = dict(providers)
        self._work = work
        self._clock = clock
        self._instance_id = instance_id  # the tag on provider jobs: the deployment's id
        self._owner = owner or instance_id  # holds claims: this host's id
        self._policy = policy or SubmitPolicy()
        self._on_created = on_created
        self._gate = gate or ProviderGate()
        self._wake = Waker()
        self._duplicates = Duplicates(store, clock=clock, instance_id=instance_id)
        # Creates refused in a row because the uploaded input is gone, per job; lost on a
        # restart, which only means a few more uploads (each after a longer wait).
        self._inputs_lost: dict[str, int] = {}

    def set_policy(self, policy: SubmitPolicy) -> None:
        self._policy = policy

    def set_providers(self, providers: Mapping[str, BatchProvider]) -> None:
        self._providers = dict(providers)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the pass
    async def run_once(self) -> int:
        now = self._clock.now()
        jobs = await self._store.claim_due(
            "submit", self._owner, LEASE_S, now=now, limit=self._policy.batch_size
        )
        jobs = [j for j in jobs if self._gate.is_open(j.provider, now)]
        await gather_bounded(jobs, self._step, limit=self._policy.concurrency)
        return len(jobs)

    async def wait(self) -> None:
        # Per provider: the first job of a paused provider is due only when the pause ends.
        ready = []
        for name in sorted(self._providers):
            first = await self._store.list_jobs(states=sorted(LOCAL), provider=name, limit=1)
            if first:
                ready.append(self._gate.ready_at(name, first[0].next_attempt_at))
        delay = 30.0 if not ready else max(0.05, min(ready) - self._clock.now())
        await self._wake.wait(delay)

    async def _step(self, job: Job) -> None:
        provider = self._providers.get(job.provider)
        sub = await self._store.get_submission(job.submission_id)
        if provider is None or sub is None:
            log.error("submit.no_provider", job_id=job.id, provider=job.provider)
            return
        try:
            await self._advance(job, sub, provider)
        except AuthError as exc:
            await self._pause(job, exc)
        except ProviderError as exc:
            if isinstance(exc, RateLimited):
                wait_s = exc.retry_after_s or self._policy.retry_base_s
                self._gate.slow_down(job.provider, self._clock.now() + wait_s)
            await self._retry_later(job, exc)
        except Exception as exc:  # a bug or a local fault (a chunk file gone, a store error):
            # this job waits and retries; the other jobs of the pass go on
            log.exception("submit.step_failed", job_id=job.id, state=job.state.value)
            await self._retry_later(job, exc)

    async def _retry_later(self, job: Job, exc: Exception) -> None:
        self._gate.record_error(job.provider, str(exc))
        current = await self._store.get_job(job.id)
        if current is None or current.state not in LOCAL:
            return
        delay = self._delay(current)
        log.warning("submit.retry", job_id=job.id, state=current.state.value, error=str(exc))
        await self._transition(
            current, current.state, last_error=str(exc), next_attempt_at=self._clock.now() + delay
        )

    async def _pause(self, job: Job, exc: AuthError) -> None:
        now = self._clock.now()
        if not self._gate.pause_for_auth(job.provider, now, str(exc)):
            return
        log.error("submit.paused", provider=job.provider, error=str(exc))
        await self._store.append_event(
            EventSpec("provider.auth_failed", {"provider": job.provider, "error": str(exc)}),
            now=now,
        )
