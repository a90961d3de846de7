"""Finishing a submission: once every job is settled, hand the merged results to the
submission's sink and commit DONE with ``results.ready`` (the collector's second half).

The sink is chosen per submission (``batchd.sinks``; the default ``FolderSink`` writes
``done/<name>/``: results.jsonl in input order, errors.jsonl, summary.json, input.jsonl, an
older run of the name moved aside). Finishing is claimed (``JobStore.claim_submission``): one
instance at a time finishes a submission, and ``finish_submission(..., owner=...)`` refuses
when its lease was taken over, so two daemons on one store never both write a run or commit it.
Every step is idempotent, so a restart (or the instance that takes over) redoes what a crash
interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from batchd import metrics
from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import NotFound, ProviderError, ProviderPermanent
from batchd.folder_origin import SOURCE as FOLDER
from batchd.folder_origin import Host
from batchd.loops import report_progress
from batchd.models import (
    SUBMISSION_OPEN,
    TERMINAL,
    Job,
    ResultState,
    Submission,
    SubmissionState,
    outcome_for,
)
from batchd.providers.base import BatchProvider, ResultLine, ResultRefs
from batchd.results import JobFiles, ParseLine
from batchd.safe_folder import UnsafeFolder
from batchd.sinks import FolderSink, ResultSink, Sinks
from batchd.spool import PRIVATE, Modes
from batchd.store.base import JobStore
from batchd.store.leases import LEASE_S, LeaseLost
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


class Finisher:
    """Finishes the settled submissions the collector points at (and, on its first pass, every
    ACTIVE one: start-up). ``policy`` and ``providers`` are read at each use (reloads)."""

    def __init__(
        self,
        store: JobStore,
        *,
        work: WorkDir,
        clock: Clock,
        owner: str,
        policy: Callable[[], CollectPolicy],
        providers: Callable[[], Mapping[str, BatchProvider]],
        host: Host,
        sink: ResultSink | None = None,
        duplicates: Duplicates | None = None,
        on_finished: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._work = work
        self._clock = clock
        self._owner = owner
        self._policy = policy
        self._providers = providers
        # Where finished submissions' results go, by origin: done/<name>/ unless told otherwise;
        # a dropped file's only from the host that saw it.
        folder = sink or FolderSink(store, work, modes=lambda: self._policy().modes)
        self.sinks = Sinks(folder)
        self.sinks.register(FOLDER, folder, serves=host.sees)
        self._duplicates = duplicates  # settled for a submission before its summary is written
        self._on_finished = on_finished
        self._to_check: set[str] | None = None  # None: check every ACTIVE submission (start-up)

    async def finish_ready(self, touched: set[str]) -> int:
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
            sink = self.sinks.for_submission(sub)
            if sink is None:  # its results go where only another instance can put them
                continue
            now = self._clock.now()
            held = await self._store.claim_submission(sub.id, self._owner, LEASE_S, now=now)
            if held is None:  # another instance finishes it: looked at until it is DONE
                self._to_check.add(submission_id)
                continue
            try:
                await self._finish(held, jobs, sink)
            except LeaseLost:  # this instance stalled past its lease: the new owner finishes
                log.warning("collect.finish_taken_over", submission_id=submission_id)
                continue
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

    async def _finish(self, sub: Submission, jobs: list[Job], sink: ResultSink) -> None:
        run = await sink.start(sub)
        items = [
            JobFiles(
                j,
                self._work.chunk(sub.id, j.chunk_index),
                self._work.result_files(sub.id, j.id),
            )
            for j in jobs
        ]
        providers = self._providers()
        tally = await run.write_results(items, parser_for(sub.provider, providers))
        counts = tally.counts()
        outcome = outcome_for(counts, cancel_requested=sub.cancel_requested_at is not None)
        if self._duplicates is not None and sub.provider in providers:
            await self._duplicates.check_submission(sub.provider, providers[sub.provider], sub.id)
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
            owner=self._owner,
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
        policy, providers = self._policy(), self._providers()
        for job in jobs:
            provider = providers.get(job.provider)
            if provider is None or job.result_state is not ResultState.COLLECTED:
                continue
            if policy.delete_input_files and job.input_file_id:
                await _delete_input(provider, job)
            if policy.delete_result_files and job.provider_job_id:
                chunk = self._work.chunk(job.submission_id, job.chunk_index)
                refs = ResultRefs(job.provider_job_id, job.output_file_id, job.error_file_id, chunk)
                try:
                    for gone in await provider.delete_results(refs):
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
