"""The steps that turn one chunk into exactly one provider job (ARCHITECTURE invariant 1),
as ``SubmitSteps``, which ``submitter.Submitter`` (the loop: claims, passes, pauses) runs.

Per job, every step is committed before the call it guards:

* The requests reach the provider its way (``BatchProvider.staging``). ``file``: the chunk is
  encoded in the provider's format (``encode_input``), and in NEW ``attempts`` is bumped
  (committed) before the upload, so after a crash we know an upload may exist; uploads are
  named ``batchd-<job id>.jsonl`` and found again by name and size (``uploads.py``); then the
  uploaded file's id is committed together with the create's attempt (NEW -> CREATING, below;
  an orphan found again goes to UPLOADED). ``inline``: nothing is uploaded, NEW goes straight
  to CREATING and the create streams the chunk (``JobSpec.input``).
* -> CREATING is committed before ``create_job``; the job carries
  ``metadata.batchd_job = <job id>``.
* Before each create is sent, ``attempts`` + 1, the first lookup time and the end of the
  reconcile window (``reconcile.py``: the create timeout plus ``reconcile_window_s``; it only
  ever moves later) are committed with the job in CREATING.
* A job found in CREATING (after a crash or an ambiguous error: timeout, 5xx, reset) is looked up
  by its tag (``find_tagged({"batchd_job": id})``) and adopted if it exists. A miss before the
  window's end commits the next lookup (backing off, the last one at the window's end) and is
  logged (``submit.reconcile_missed``); only a miss after the window's end leads to a new create,
  committed as above. A restart resumes from what was committed and never shortens the window.
  Upload and create are never retried blindly.
* A refusal that certainly had no effect is not ambiguous: 429 puts the job back to UPLOADED
  (NEW for inline staging; backing off), 401/403 too (and pauses the provider), a missing
  input file (404, or a 400/422 naming it; file staging) uploads again, any other 4xx fails
  the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from batchd.clock import Clock
from batchd.duplicates import Duplicates
from batchd.errors import AuthError, ProviderError, ProviderPermanent, RateLimited
from batchd.health import ProviderGate
from batchd.models import ACTIVE, Job, JobState, Submission, backoff_s
from batchd.providers.base import (
    BatchProvider,
    ChunkInput,
    JobSnapshot,
    JobSpec,
    TagQuery,
    carries_metadata,
)
from batchd.reconcile import (
    CLOCK_SKEW_S,
    ReconcileWindow,
    create_deadline,
    first_lookup_at,
    had_no_effect,
    input_file_gone,
    next_lookup_at,
    window_end,
)
from batchd.store.base import EventSpec, JobStore
from batchd.uploads import find_upload, upload_name
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)


DEFAULT_CREATE_TIMEOUT_S = 60.0  # ProviderSettings.timeout_s
MAX_LOOKUP_GAP_S = 60.0


@dataclass(frozen=True, slots=True)
class SubmitPolicy:
    concurrency: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    reconcile_delay_s: float = 5.0
    reconcile_window_s: float = 120.0  # provider grace beyond the create timeout
    create_timeout_s: Mapping[str, float] = field(default_factory=dict)  # per provider
    batch_size: int = 500
    input_reuploads: int = 3  # in a row, each answered "input gone", before the chunk fails

    def window(self, provider: str) -> ReconcileWindow:
        return ReconcileWindow(
            create_timeout_s=self.create_timeout_s.get(provider, DEFAULT_CREATE_TIMEOUT_S),
            grace_s=self.reconcile_window_s,
            first_lookup_s=self.reconcile_delay_s,
            max_lookup_gap_s=min(MAX_LOOKUP_GAP_S, self.retry_max_s),
        )


def job_metadata(sub: Submission, job: Job, instance_id: str) -> dict[str, str]:
    """The metadata batchd puts on every provider job: the user's route metadata plus tags."""
    return {
        **sub.metadata,
        "batchd": instance_id,
        "batchd_job": job.id,
        "batchd_submission": sub.id,
        "batchd_route": sub.route,
    }


def adopted_state(snapshot: JobSnapshot) -> JobState:
    """Adopt an active job as it is; anything else is adopted as PENDING so that the tracker
    observes (and announces) its final state through the usual transition."""
    return snapshot.state if snapshot.state in ACTIVE else JobState.PENDING


def _unsent(by_file: bool) -> JobState:
    """Where a job whose create certainly had no effect waits to be created again: UPLOADED
    (its input is there) for file staging, NEW for inline (nothing was ever sent)."""
    return JobState.UPLOADED if by_file else JobState.NEW


class SubmitSteps:
    """One job's next step, from its committed state (the ``Submitter`` loop holds the state
    these share and runs ``_advance`` per claimed job)."""

    _store: JobStore
    _work: WorkDir
    _clock: Clock
    _instance_id: str  # the tag on provider jobs (the deployment's id)
    _owner: str  # the owner of claims (this host's id)
    _policy: SubmitPolicy
    _gate: ProviderGate
    _duplicates: Duplicates
    _on_created: Callable[[], None]
    # Creates refused in a row because the uploaded input is gone, per job; lost on a
    # restart, which only means a few more uploads (each after a longer wait).
    _inputs_lost: dict[str, int]

    async def _advance(self, job: Job, sub: Submission, provider: BatchProvider) -> None:
        if job.cancel_requested and job.state in {JobState.NEW, JobState.UPLOADED}:
            await self._cancel_unsent(job)
            return
        by_file = provider.staging == "file"
        if job.state is JobState.CREATING:
            if await self._reconcile(job, sub, provider) or not await self._window_passed(job):
                return
            if job.cancel_requested:  # the window passed with no job: nothing was created
                await self._cancel_unsent(job)
                return
            if by_file and job.input_file_id is None:
                job = await self._transition(job, JobState.NEW, input_file_id=None)
        if job.state is JobState.NEW and by_file:
            job = await self._upload(job, sub, provider)
            if job.state is JobState.CREATING:  # uploaded, its create's attempt committed with it
                await self._create(job, sub, provider)
                return
        if job.state in {JobState.UPLOADED, JobState.CREATING} or (
            job.state is JobState.NEW and not by_file  # inline: the create sends the requests
        ):
            job = await self._begin_create(job)
            await self._create(job, sub, provider)

    async def _begin_create(self, job: Job, *, uploaded: str | None = None) -> Job:
        """Commit the attempt before sending it: if we die while the create is in flight, the
        restart looks the job up after reconcile_delay_s and keeps looking until the window
        committed here has passed. ``uploaded``: the input file a job in NEW was just given,
        committed with the attempt (NEW -> CREATING, one transaction instead of NEW -> UPLOADED
        -> CREATING: both are committed before the create is sent, as before)."""
        now = self._clock.now()
        window = self._policy.window(job.provider)
        end = create_deadline(now, window, job.reconcile_until)
        given = {} if uploaded is None else {"input_file_id": uploaded}
        return await self._transition(
            job,
            JobState.CREATING,
            attempts=1 if uploaded is not None else job.attempts + 1,
            lookups=0,
            reconcile_until=end,
            next_attempt_at=first_lookup_at(now, end, window),
            **given,
        )

    async def _window_passed(self, job: Job) -> bool:
        """After a lookup found nothing: True when a new create may be sent; otherwise the next
        lookup is committed. Every miss is logged."""
        now = self._clock.now()
        window = self._policy.window(job.provider)
        end = window_end(job, window)
        nxt = next_lookup_at(now, job.lookups, end, window)
        log.info(
            "submit.reconcile_missed",
            job_id=job.id,
            create_attempt=job.attempts,
            lookup=job.lookups + 1,
            next_lookup_in_s=None if nxt is None else round(nxt - now, 3),
            recreate_in_s=round(max(0.0, end - now), 3),
        )
        if nxt is None:
            return True
        await self._transition(job, JobState.CREATING, lookups=job.lookups + 1, next_attempt_at=nxt)
        return False

    # ------------------------------------------------------------------ upload
    async def _upload(self, job: Job, sub: Submission, provider: BatchProvider) -> Job:
        """File staging: encode the chunk in the provider's format (``encode_input``), reuse an
        upload a crash orphaned (same name and size), else upload it."""
        name = upload_name(job.id)
        chunk = self._chunk_input(job, sub)
        scratch = self._work.staged(job.submission_id, job.chunk_index)
        staged = await asyncio.to_thread(provider.encode_input, chunk, scratch)
        try:
            if job.attempts > 0:
                found = await find_upload(provider, job, name, staged.stat().st_size)
                if found is not None:
                    return await self._transition(job, JobState.UPLOADED, input_file_id=found)
            job = await self._transition(job, JobState.NEW, attempts=job.attempts + 1)
            try:
                ref = await provider.upload_file(staged, filename=name)
            except AuthError:
                raise
            except ProviderPermanent as exc:  # refused (too large, invalid): retrying cannot help
                return await self._refused(job, exc, stage="upload")
        finally:
            if staged != chunk.path:
                await asyncio.to_thread(staged.unlink, missing_ok=True)
        log.info("submit.uploaded", job_id=job.id, file_id=ref.id, size_bytes=ref.size_bytes)
        return await self._begin_create(job, uploaded=ref.id)

    def _chunk_input(self, job: Job, sub: Submission) -> ChunkInput:
        path = self._work.chunk(job.submission_id, job.chunk_index)
        return ChunkInput(path, job.id, sub.endpoint, sub.model)

    # ------------------------------------------------------------------ create
    async def _create(self, job: Job, sub: Submission, provider: BatchProvider) -> None:
        by_file = provider.staging == "file"
        spec = JobSpec(
            endpoint=sub.endpoint,
            model=sub.model,
            input_files=(job.input_file_id or "",) if by_file else (),
            metadata=job_metadata(sub, job, self._instance_id),
            timeout_hours=sub.timeout_hours,
            input=self._chunk_input(job, sub),
        )
        try:
            snapshot = await provider.create_job(spec)
        except ProviderError as exc:
            await self._create_failed(job, exc, by_file=by_file)
            return
        await self._adopt(job, snapshot)

    async def _create_failed(self, job: Job, exc: ProviderError, *, by_file: bool) -> None:
        if not had_no_effect(exc):  # ambiguous: reconcile over the window before anything else
            await self._ambiguous(job, exc)
        elif by_file and input_file_gone(exc, job.input_file_id):  # the upload is gone: again
            await self._input_gone(job, exc)
        elif isinstance(exc, AuthError):  # nothing was created; the provider pauses
            await self._transition(job, _unsent(by_file), last_error=str(exc))
            raise exc
        elif isinstance(exc, ProviderPermanent):  # a definite refusal: nothing was created
            await self._refused(job, exc)
        else:  # 429: nothing was created; back off, then create as usual
            await self._not_sent(job, exc, by_file=by_file)

    async def _input_gone(self, job: Job, exc: ProviderError) -> None:
        """Upload again (at once the first time, then after a growing wait), at most
        ``input_reuploads`` times in a row; after that the chunk fails: the provider keeps losing
        what it was given, and uploading again cannot be trusted to help."""
        lost = self._inputs_lost.get(job.id, 0) + 1
        if lost > self._policy.input_reuploads:
            self._inputs_lost.pop(job.id, None)
            reason = (
                f"the provider kept losing the uploaded input: {lost} creates in a row were "
                f"refused because the input file was gone, each after a new upload (last: {exc})"
            )
            await self._refused(job, ProviderPermanent(reason, status=exc.status))
            return
        self._inputs_lost[job.id] = lost
        delay = 0.0 if lost == 1 else self._backoff(lost - 2)
        log.warning(
            "submit.input_gone",
            job_id=job.id,
            error=str(exc),
            reupload=lost,
            retry_in_s=round(delay, 1),
        )
        await self._transition(
            job,
            JobState.NEW,
            input_file_id=None,
            attempts=0,
            next_attempt_at=self._clock.now() + delay,
        )

    async def _reconcile(self, job: Job, sub: Submission, provider: BatchProvider) -> bool:
        """Look the job up by its tag (or requests) since its row was made; adopt it if found."""
        tag, since = {"batchd_job": job.id}, job.created_at - CLOCK_SKEW_S  # (OpenAI walks back)
        query = TagQuery(tag, created_after=since, input=self._chunk_input(job, sub))
        # Checked here too whatever the provider did: adopting another job is worse than a miss.
        found = [s async for s in provider.find_tagged(query) if carries_metadata(s, query.tag)]
        if not found:
            return False
        found.sort(key=lambda s: (s.created_at or 0.0, s.id))
        for extra in found[1:]:  # a create landed after the window: cancel, record, announce
            await self._duplicates.settle(job.provider, provider, extra, job, kept=found[0].id)
        log.info("submit.reconciled", job_id=job.id, provider_job_id=found[0].id)
        await self._adopt(job, found[0])
        return True

    async def _adopt(self, job: Job, snapshot: JobSnapshot) -> None:
        self._inputs_lost.pop(job.id, None)
        now = self._clock.now()
        await self._store.transition_job(
            job.id,
            JobState.CREATING,
            adopted_state(snapshot),
            now=now,
            owner=self._owner,
            provider_job_id=snapshot.id,
            raw_status=snapshot.raw_status,
            counts=snapshot.counts,
            provider_created_at=snapshot.created_at,
            attempts=0,
            last_error=None,
            next_attempt_at=now,
            event=EventSpec(
                "batch.created",
                {
                    "submission_id": job.submission_id,
                    "job_id": job.id,
                    "chunk": job.chunk_index,
                    "provider": job.provider,
                    "provider_job_id": snapshot.id,
                    "requests": job.line_count,
                    "state": adopted_state(snapshot).value,
                },
            ),
        )
        self._on_created()

    # ------------------------------------------------------------------ failures
    async def _refused(self, job: Job, exc: ProviderPermanent, *, stage: str = "create") -> Job:
        self._gate.record_error(job.provider, str(exc))
        return await self._store.transition_job(
            job.id,
            job.state,
            JobState.FAILED,
            now=self._clock.now(),
            owner=self._owner,
            last_error=str(exc),
            event=EventSpec(
                "batch.failed",
                {
                    "submission_id": job.submission_id,
                    "job_id": job.id,
                    "provider": job.provider,
                    "error": str(exc),
                    "stage": stage,
                },
            ),
        )

    async def _ambiguous(self, job: Job, exc: ProviderError) -> None:
        self._gate.record_error(job.provider, str(exc))
        now = self._clock.now()
        window = self._policy.window(job.provider)
        end = window_end(job, window)
        nxt = first_lookup_at(now, end, window)
        log.warning(
            "submit.create_ambiguous",
            job_id=job.id,
            create_attempt=job.attempts,
            error=str(exc),
            lookup_in_s=round(nxt - now, 3),
            window_ends_in_s=round(max(0.0, end - now), 3),
        )
        await self._transition(job, JobState.CREATING, last_error=str(exc), next_attempt_at=nxt)

    async def _not_sent(self, job: Job, exc: ProviderError, *, by_file: bool) -> None:
        """A 429 on create: the request had no effect; wait and create again."""
        self._gate.record_error(job.provider, str(exc))
        now = self._clock.now()
        retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
        wait_s = max(retry_after or 0.0, self._delay(job))
        self._gate.slow_down(job.provider, now + (retry_after or self._policy.retry_base_s))
        log.warning("submit.create_refused", job_id=job.id, error=str(exc), retry_in_s=wait_s)
        await self._transition(
            job, _unsent(by_file), last_error=str(exc), next_attempt_at=now + wait_s
        )

    async def _cancel_unsent(self, job: Job) -> None:
        await self._store.transition_job(
            job.id,
            job.state,
            JobState.CANCELLED,
            now=self._clock.now(),
            owner=self._owner,
            event=EventSpec(
                "batch.cancelled",
                {"submission_id": job.submission_id, "job_id": job.id, "sent": False},
            ),
        )

    def _delay(self, job: Job) -> float:
        return self._backoff(job.attempts - 1)

    def _backoff(self, attempt: int) -> float:
        return backoff_s(
            max(0, attempt), base_s=self._policy.retry_base_s, cap_s=self._policy.retry_max_s
        )

    async def _transition(self, job: Job, new: JobState, **fields: Any) -> Job:
        return await self._store.transition_job(
            job.id, job.state, new, now=self._clock.now(), owner=self._owner, **fields
        )
