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
from dataclasses import dataclass

import structlog

from batchd import metrics
from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import AuthError, NotFound, ProviderError, ProviderPermanent, StaleState
from batchd.health import ProviderGate
from batchd.loops import Waker, gather_bounded, report_progress
from batchd.models import (
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    JobState,
    ResultState,
    Submission,
    SubmissionState,
    backoff_s,
    outcome_for,
)
from batchd.providers.base import BatchProvider, ResultLine, ResultRefs
from batchd.results import (
    UNVERIFIED,
    JobFiles,
    ParseLine,
    ResultsInvalid,
    ResultsUncounted,
    verify_job,
)
from batchd.safe_folder import UnsafeFolder
from batchd.sinks import FolderSink, ResultSink
from batchd.spool import PRIVATE, Modes
from batchd.store.base import EventSpec, JobStore
from batchd.store.leases import LEASE_S
from batchd.summary import build_summary, dump_summary, ready_event
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CollectPolicy:
    concurrency: int = 2
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    verify_attempts: int = 3
    modes: Modes = PRIVATE  # of results folders and files
    delete_input_files: bool = True  # at the provider, once the results are written
    delete_result_files: bool = False


def parser_for(name: str, providers: Mapping[str, BatchProvider]) -> ParseLine:
    """The result-line parser of provider ``name``, never another provider's: when ``name`` is
    not open, every line is unreadable (``ProviderPermanent``), which the merge reports."""
    provider = providers.get(name)
    if provider is not None:
        return provider.parse_result_line

    def unreadable(raw: bytes) -> ResultLine:
        raise ProviderPermanent(f"provider {name!r} is not open: its result lines cannot be read")

    return unreadable


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
        gate: ProviderGate | None = None,
    ) -> None:
        self._store = store
        self._gate = gate or ProviderGate()  # shared with the submitter and tracker
        self._owner = instance_id  # holds the jobs it downloads (claim_due)
        # Where finished submissions' results go: done/<name>/ unless told otherwise.
        self._sink = sink or FolderSink(store, work, modes=lambda: self._policy.modes)
        self._duplicates = duplicates  # settled for a submission before its summary is written
        self._providers = dict(providers)
        self._work = work
        self._clock = clock
        self._policy = policy or CollectPolicy()
        self._rng = rng or random.Random()
        self._on_finished = on_finished
        self._to_check: set[str] | None = None  # None: check every ACTIVE submission (start-up)
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
        return len(jobs) + await self._finish_ready({j.submission_id for j in jobs})

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

    # ------------------------------------------------------------------ submissions
    async def _finish_ready(self, touched: set[str]) -> int:
        if self._to_check is None:
            active = await self._store.list_submissions(
                states=[SubmissionState.ACTIVE], limit=1_000_000_000
            )
            touched |= {s.id for s in active}
            self._to_check = set()
            await self._remove_finished_work()
        touched |= self._to_check
        self._to_check = set()
        finished = 0
        for submission_id in sorted(touched):
            sub = await self._store.get_submission(submission_id)
            if sub is None or sub.state is not SubmissionState.ACTIVE:
                continue
            jobs = await self._store.jobs_for_submission(submission_id)
            if not jobs or not all(_settled(j) for j in jobs):
                continue
            try:
                await self._finish(sub, jobs)
            except UnsafeFolder as exc:  # done/ replaced by a link: refused, said, tried again
                self._refused(submission_id, exc)
                continue
            except Exception:  # disk full, EIO...: not forgotten, tried again next pass
                log.exception("collect.finish_failed", submission_id=submission_id)
                self._to_check.add(submission_id)
                continue
            finished += 1
            report_progress()
        return finished

    def _refused(self, submission_id: str, exc: UnsafeFolder) -> None:
        """Nothing is written through a link; the results wait in the work folder."""
        log.error("collect.unsafe_folder", submission_id=submission_id, error=str(exc))
        if self._to_check is not None:  # tried again on the next pass (not woken at once)
            self._to_check.add(submission_id)

    async def _remove_finished_work(self) -> None:
        """Work folders of finished submissions: a crash came between the commit and the
        removal (start-up only)."""
        for submission_id in self._work.submission_ids():
            sub = await self._store.get_submission(submission_id)
            if sub is not None and sub.state not in SUBMISSION_OPEN:
                self._work.remove(submission_id)
                log.info("collect.work_removed", submission_id=submission_id)

    def recheck(self, submission_id: str) -> None:
        """Ask the next pass to look at a submission (for example after a cancel)."""
        if self._to_check is not None:
            self._to_check.add(submission_id)
        self._wake.set()

    async def _finish(self, sub: Submission, jobs: list[Job]) -> None:
        run = await self._sink.start(sub)
        items = [
            JobFiles(
                j,
                self._work.chunk(sub.id, j.chunk_index),
                self._work.result_files(sub.id, j.id),
            )
            for j in jobs
        ]
        tally = await run.write_results(items, parser_for(sub.provider, self._providers))
        counts = tally.counts()
        outcome = outcome_for(counts, cancel_requested=sub.cancel_requested_at is not None)
        if self._duplicates is not None and sub.provider in self._providers:
            await self._duplicates.check_submission(
                sub.provider, self._providers[sub.provider], sub.id
            )
        now = self._clock.now()
        duplicates = await self._store.duplicates(submission_id=sub.id)
        summary = build_summary(
            sub, jobs, tally, outcome, run.location, now=now, duplicates=duplicates
        )
        remembered = await run.finish(dump_summary(summary))
        await self._delete_provider_files(jobs)
        await self._store.finish_submission(
            sub.id,
            outcome,
            now=now,
            event=ready_event(sub, jobs, tally, outcome, run.location),
            results=counts,
            results_dir=remembered,
        )
        self._work.remove(sub.id)
        metrics.finished(
            sub.route,
            outcome.value,
            succeeded=counts.succeeded,
            failed=counts.failed,
            missing=counts.missing,
            usage=counts.usage,
        )
        log.info("collect.finished", submission_id=sub.id, outcome=outcome.value)
        self._on_finished()

    async def _delete_provider_files(self, jobs: list[Job]) -> None:
        """The provider's copies, once our results are written (before DONE, so that a crash
        redoes it; an id already gone is fine): the uploaded input (``delete_input_files``)
        and the results, which the provider deletes its own way (``delete_results``; one
        without files does nothing). Only after a successful collection: a job whose results
        are unavailable keeps its input there, for a look at what happened. A failure is
        logged and the copy left: it never holds up the results."""
        for job in jobs:
            provider = self._providers.get(job.provider)
            if provider is None or job.result_state is not ResultState.COLLECTED:
                continue
            if self._policy.delete_input_files and job.input_file_id:
                await _delete_input(provider, job)
            if self._policy.delete_result_files and job.provider_job_id:
                try:
                    for gone in await provider.delete_results(self._refs(job)):
                        log.info("collect.file_deleted", job_id=job.id, file_id=gone)
                except ProviderError as exc:
                    log.warning("collect.results_not_deleted", job_id=job.id, error=str(exc))


async def _delete_input(provider: BatchProvider, job: Job) -> None:
    file_id = job.input_file_id or ""
    try:
        await provider.delete_file(file_id)
    except NotFound:
        pass
    except ProviderError as exc:
        log.warning("collect.file_not_deleted", job_id=job.id, file_id=file_id, error=str(exc))
        return
    log.info("collect.file_deleted", job_id=job.id, file_id=file_id)


def _settled(job: Job) -> bool:
    return job.state in TERMINAL and job.result_state in {
        ResultState.COLLECTED,
        ResultState.UNAVAILABLE,
    }
