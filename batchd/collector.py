"""Collect results the moment a job ends, and hand each finished submission back to the user.

Per terminal job: download the output and error files (streamed to the work folder), verify them
against the job (line count, every custom_id known and unique), mark the job COLLECTED. A 404 on
the content makes the job's results UNAVAILABLE (with ``results.unavailable``); other failures
retry with backoff (a 401/403 pauses the provider, as in the submitter and tracker: one
``provider.auth_failed`` event, and its jobs wait for the pause to end); files that keep
failing verification are accepted after ``verify_attempts`` with the problem recorded in the
summary (files holding more lines than the job counted are accepted at once: downloading them
again cannot change that). Requests without a result line
are marked as such in results.jsonl, and the submission ends partial.

When every job of a submission is settled, hand the merged results to the submission's sink
(``batchd.sinks``; the default ``FolderSink`` writes ``done/<name>/``: results.jsonl in input
order, errors.jsonl, summary.json, input.jsonl, an older run of the name moved aside), then
commit DONE with ``results.ready``. Every step is idempotent, so a restart redoes what a crash
interrupted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping

import structlog

from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import AuthError, NotFound, ProviderError, StaleState
from batchd.finishing import CollectPolicy, Finisher
from batchd.folder_origin import Host
from batchd.health import ProviderGate
from batchd.loops import Waker, gather_bounded
from batchd.models import (
    Job,
    JobState,
    ResultState,
    Submission,
    backoff_s,
)
from batchd.providers.base import BatchProvider, ResultRefs
from batchd.results import (
    UNVERIFIED,
    ResultsInvalid,
    ResultsUncounted,
    verify_job,
)
from batchd.sinks import ResultSink
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LEASE_S
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)

# Named here too (callers import the collector's policy from this module).
__all__ = ["CollectPolicy", "Collector"]


class Collector:
    name = "collector"

    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, BatchProvider],
        *,
        work: WorkDir,
        clock: Clock,
        policy: CollectPolicy | None = None,
        rng: random.Random | None = None,
        on_finished: Callable[[], None] = lambda: None,
        duplicates: Duplicates | None = None,
        sink: ResultSink | None = None,
        instance_id: str,
        owner: str | None = None,
        gate: ProviderGate | None = None,
    ) -> None:
        """``instance_id``: the deployment's tag on provider jobs; ``owner``: this host's id,
        which claims the work (defaults to ``instance_id``)."""
        self._store = store
        self._gate = gate or ProviderGate()  # shared with the submitter and tracker
        self._owner = owner or instance_id  # holds the jobs it downloads (claim_due)
        self._providers = dict(providers)
        self._work = work
        self._clock = clock
        self._policy = policy or CollectPolicy()
        self._rng = rng or random.Random()
        # Hands each settled submission to its sink and commits DONE (batchd.finishing).
        self.finisher = Finisher(
            store,
            work=work,
            clock=clock,
            owner=self._owner,
            policy=lambda: self._policy,
            providers=lambda: self._providers,
            host=Host(self._owner, instance_id),
            sink=sink,
            duplicates=duplicates,
            on_finished=on_finished,
        )
        # Verification failures per job (download retries are counted apart, in job.attempts);
        # lost on a restart, which only means a few more tries.
        self._verify_failures: dict[str, int] = {}
        self._wake = Waker()

    def set_policy(self, policy: CollectPolicy) -> None:
        self._policy = policy

    def set_providers(self, providers: Mapping[str, BatchProvider]) -> None:
        self._providers = dict(providers)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the pass
    async def run_once(self) -> int:
        now = self._clock.now()
        jobs = await self._store.claim_due("collect", self._owner, LEASE_S, now=now, limit=100)
        jobs = [j for j in jobs if self._gate.is_open(j.provider, now)]
        await gather_bounded(jobs, self._collect, limit=self._policy.concurrency)
        return len(jobs) + await self.finisher.finish_ready({j.submission_id for j in jobs})

    async def wait(self) -> None:
        # Per provider: the first job of a paused provider is due only when the pause ends.
        ready = []
        for name in sorted(self._providers):
            first = await self._store.list_jobs(result_pending=True, provider=name, limit=1)
            if first:
                ready.append(self._gate.ready_at(name, first[0].next_attempt_at))
        delay = 30.0 if not ready else min(ready) - self._clock.now()
        await self._wake.wait(max(0.05, delay))

    # ------------------------------------------------------------------ one job
    async def _collect(self, job: Job) -> None:
        try:
            await self._collect_job(job)
        except Exception as exc:  # a local fault (disk full, EIO) or a bug: this job waits
            log.exception("collect.failed", job_id=job.id)
            await self._retry(job, f"collect failed: {exc}")

    async def _collect_job(self, job: Job) -> None:
        if job.state is JobState.LOST:
            await self._unavailable(job, "the provider no longer knows this job")
            return
        try:
            await self._download(job)
        except NotFound as exc:
            await self._unavailable(job, str(exc))
            return
        except AuthError as exc:
            await self._pause(job, exc)
            return
        except ProviderError as exc:
            self._gate.record_error(job.provider, str(exc))
            await self._retry(job, f"download failed: {exc}")
            return
        chunk = self._work.chunk(job.submission_id, job.chunk_index)
        provider = self._providers[job.provider] if job.provider_job_id else None
        try:
            if provider is not None:
                await asyncio.to_thread(
                    verify_job,
                    job,
                    chunk,
                    self._work.result_files(job.submission_id, job.id),
                    provider.parse_result_line,
                )
        except ResultsInvalid as exc:
            failures = self._verify_failures.get(job.id, 0) + 1
            self._verify_failures[job.id] = failures
            if failures < self._policy.verify_attempts and not isinstance(exc, ResultsUncounted):
                await self._retry(job, f"results failed verification: {exc}")
                return
            log.warning("collect.unverified", job_id=job.id, problem=str(exc), tries=failures)
            self._verify_failures.pop(job.id, None)
            await self._settle(job, ResultState.COLLECTED, last_error=f"{UNVERIFIED}{exc}")
            return
        self._verify_failures.pop(job.id, None)
        await self._settle(job, ResultState.COLLECTED, last_error=None)

    async def _download(self, job: Job) -> None:
        """The provider fetches the job's results into its folder in the work folder."""
        if job.provider_job_id is None:
            return
        provider = self._providers[job.provider]
        folder = self._work.results(job.submission_id, job.id)
        for got in await provider.fetch_results(self._refs(job), folder):
            log.info(
                "collect.downloaded", job_id=job.id, file_id=got.source, size_bytes=got.size_bytes
            )

    def _refs(self, job: Job) -> ResultRefs:
        chunk = self._work.chunk(job.submission_id, job.chunk_index)
        return ResultRefs(
            job.provider_job_id or "", job.output_file_id, job.error_file_id, chunk, job.id
        )

    async def _settle(self, job: Job, state: ResultState, *, last_error: str | None) -> None:
        try:
            await self._store.transition_job(
                job.id,
                job.state,
                job.state,
                now=self._clock.now(),
                owner=self._owner,
                result_state=state,
                collected_at=self._clock.now(),
                attempts=0,
                last_error=last_error,
            )
        except StaleState:
            return

    async def _unavailable(self, job: Job, reason: str) -> None:
        log.error("collect.results_unavailable", job_id=job.id, reason=reason)
        await self._store.transition_job(
            job.id,
            job.state,
            job.state,
            now=self._clock.now(),
            owner=self._owner,
            result_state=ResultState.UNAVAILABLE,
            collected_at=self._clock.now(),
            last_error=reason,
            event=EventSpec(
                "results.unavailable",
                {
                    "submission_id": job.submission_id,
                    "job_id": job.id,
                    "provider_job_id": job.provider_job_id,
                    "reason": reason,
                },
            ),
        )

    async def _retry(self, job: Job, reason: str) -> None:
        delay = backoff_s(
            job.attempts,
            base_s=self._policy.retry_base_s,
            cap_s=self._policy.retry_max_s,
            rng=self._rng,
        )
        log.warning("collect.retry", job_id=job.id, reason=reason, retry_in_s=round(delay, 1))
        await self._store.transition_job(
            job.id,
            job.state,
            job.state,
            now=self._clock.now(),
            owner=self._owner,
            attempts=job.attempts + 1,
            next_attempt_at=self._clock.now() + delay,
            last_error=reason,
        )

    async def _pause(self, job: Job, exc: AuthError) -> None:
        """The key was refused: pause the provider (announced once per pause) and let the job
        wait until the pause ends; the refusal is not the job's fault, so no attempt is counted."""
        now = self._clock.now()
        if self._gate.pause_for_auth(job.provider, now, str(exc)):
            log.error("collect.paused", provider=job.provider, error=str(exc))
            await self._store.append_event(
                EventSpec("provider.auth_failed", {"provider": job.provider, "error": str(exc)}),
                now=now,
            )
        await self._store.transition_job(
            job.id,
            job.state,
            job.state,
            now=now,
            owner=self._owner,
            next_attempt_at=self._gate.open_at(job.provider),
            last_error=f"download refused: {exc}",
        )

    def register_sink(
        self, source: str, sink: ResultSink, *, serves: Callable[[Submission], bool]
    ) -> None:
        """Results of the submissions from ``source`` (their origin's ``"source"``) go to
        ``sink``, from an instance where ``serves(sub)`` (``sinks.Sinks``)."""
        self.finisher.sinks.register(source, sink, serves=serves)

    def recheck(self, submission_id: str) -> None:
        """Ask the next pass to look at a submission (for example after a cancel)."""
        self.finisher.recheck(submission_id)
        self._wake.set()
