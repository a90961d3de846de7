"""Claim one dropped file, validate it, and accept or reject it: each step resumable.

The order is what makes a crash at any instant harmless (ARCHITECTURE invariant 2):

1. ``begin_claim`` commits a CLAIMING row whose origin (``folder_origin.FolderOrigin``) names
   this host, the file's paths and its inode;
2. the file is renamed from inbox/ into processing/ (``mark_claimed``);
3. it is validated and split; chunk files are written to the work folder (deterministic, so
   redoing this after a crash writes the same bytes);
4. ``accept_submission`` commits the jobs and ``submission.accepted`` in one transaction, or the
   file moves to rejected/ with its reason and ``reject_submission`` commits the rejection.

``resume`` finishes whatever a previous process left half done, by looking for the inode. Only
the host that saw a file acts on its submission (``Claimer.sees``): another instance sharing
the store leaves it alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from batchd import metrics
from batchd import options as sidecars
from batchd.batchfile import (
    FileLimits,
    ParsedFile,
    format_reason,
    model_mismatch,
)
from batchd.chunks import FileChanged
from batchd.clock import Clock
from batchd.errors import IntakeRejected, Problem
from batchd.folder_origin import LOCAL, FolderOrigin, Host
from batchd.models import Submission, SubmissionState
from batchd.providers.base import ProviderLimits
from batchd.rejects import (
    find_in_inbox,
    first_problem,
    move_aside,
    reason_path,
    rejected_candidates,
    rejected_name,
)
from batchd.safe_folder import place_with_reason
from batchd.settle import Decision, GiveUp, SettleGate, Wait, changed_since
from batchd.spool import (
    PRIVATE,
    Modes,
    SpoolPaths,
    display_name,
    lstat_identity,
    move,
    name_allowed,
)
from batchd.store.base import ChunkPlan, DuplicateContent, EventSpec, JobStore, NewSubmission
from batchd.validate import duplicate_reason, validate_file, write_chunks
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)


class RouteLike(sidecars.RouteDefaults, Protocol):
    """What claims need of a route (``config.RouteConfig`` satisfies it). The drop folder
    serves only the routes that have a spool."""

    @property
    def name(self) -> str: ...
    @property
    def spool(self) -> Path | None: ...
    @property
    def provider(self) -> str: ...


class Claimer:
    def __init__(
        self,
        store: JobStore,
        *,
        work: WorkDir,
        limits: FileLimits,
        limits_for: Callable[[str], ProviderLimits],
        clock: Clock,
        reject_duplicates: bool = True,
        modes: Modes = PRIVATE,
        host: Host = LOCAL,
    ) -> None:
        self._store = store
        self._host = host
        self._work = work
        self._limits = limits
        self._limits_for = limits_for
        self._clock = clock
        self._reject_duplicates = reject_duplicates
        self._modes = modes
        self.settle = SettleGate(clock)

    @property
    def host(self) -> Host:
        """This host (the one named in the origins of the files it claims)."""
        return self._host

    @staticmethod
    def processing_of(sub: Submission) -> str:
        """Where the file of a submission taken by a drop folder waits (its origin's path)."""
        return _folder(sub).processing

    def sees(self, sub: Submission) -> bool:
        """Whether ``sub`` is a file this host claimed (the only ones it may act on)."""
        return self._host.sees(sub)

    def configure(
        self, limits: FileLimits, *, reject_duplicates: bool, modes: Modes = PRIVATE
    ) -> None:
        """Apply reloaded intake settings to the files claimed from now on."""
        self._limits = limits
        self._reject_duplicates = reject_duplicates
        self._modes = modes

    # ------------------------------------------------------------------ steps 1-2
    async def claim(
        self, route: RouteLike, name: str, *, renamed: bool = False
    ) -> Submission | None:
        paths = spool_paths(route)
        ident = lstat_identity(paths.inbox / name)
        if ident is None:
            return None
        processing_name = f"{ident.ino}-{name}" if name_allowed(name) else f"{ident.ino}.jsonl"
        shown = display_name(name)  # what is stored, logged and written; the file keeps its name
        given = await asyncio.to_thread(sidecars.options_at_claim, paths.inbox / name)
        origin = FolderOrigin(
            host=self._host.id,
            inbox=str(paths.inbox / shown),
            processing=str(paths.processing / processing_name),
            dev=ident.dev,
            ino=ident.ino,
        )
        sub = await self._store.begin_claim(
            NewSubmission(
                route=route.name,
                name=shown,
                provider=route.provider,
                **sidecars.submission_options(route, given),
                size_bytes=ident.size_bytes,
                origin=origin.to_json(),
            ),
            now=self._clock.now(),
        )
        self.settle.claimed(sub.id, renamed=renamed)
        metrics.claimed(route.name, sub.created_at - ident.mtime_ns / 1e9)
        return await self._finish_claim(sub, paths, ident.ino, inbox_name=name)

    async def _finish_claim(
        self, sub: Submission, paths: SpoolPaths, ino: int, *, inbox_name: str | None = None
    ) -> Submission:
        processing = Path(_folder(sub).processing)
        found = lstat_identity(processing)
        inbox = None  # None: already in processing/
        if found is None or found.ino != ino:
            inbox = find_in_inbox(paths.inbox, inbox_name or sub.name, ino)
            if inbox is None:
                await self._store.abandon_submission(
                    sub.id, "the file disappeared before batchd claimed it", now=self._clock.now()
                )
                return sub
        sidecar_of = paths.inbox / (inbox_name or sub.name)
        await asyncio.to_thread(_move_in, inbox, processing, sidecar_of)
        return await self._store.mark_claimed(sub.id, now=self._clock.now())

    # ------------------------------------------------------------------ steps 3-4
    async def process(self, sub: Submission, route: RouteLike, *, settle_s: float = 0.0) -> bool:
        """Validate a CLAIMED submission; accept or reject it, or wait while it is still being
        written (``batchd.settle``; ``settle_s``: intake's ``min_age_s``). True when accepted."""
        processing = Path(_folder(sub).processing)
        paths = spool_paths(route)
        before = lstat_identity(processing)
        if before is None:
            await self._recover_rejected(sub, paths)
            return False
        decision = await self.settle.before_read(sub.id, processing, before, settle_s)
        if not await self._settle(sub, paths, processing, decision):
            return False
        try:
            given = await asyncio.to_thread(sidecars.read_options, processing, sub.name)
        except IntakeRejected as exc:  # its sidecar is invalid
            self.settle.done(sub.id)
            await self._reject(sub, paths, processing, exc)
            return False
        result = await self._read(sub, processing)
        read_bytes = None if isinstance(result, IntakeRejected) else result[0].size_bytes
        if isinstance(result, FileChanged) or changed_since(processing, before, read_bytes):
            self._work.remove(sub.id)  # what was read is not what the file holds now
            await self._settle(sub, paths, processing, self.settle.changed(sub.id))
            return False
        self.settle.done(sub.id)
        if isinstance(result, IntakeRejected):  # invalid or unreadable
            await self._reject(sub, paths, processing, result)
            return False
        parsed, chunks = result
        # The store checks for duplicates in the accept's own transaction: files processed
        # concurrently (here, or by another process on the same store) see every earlier accept.
        unique = self._reject_duplicates and not (given and given.allow_duplicate)
        try:
            await self._accept(sub, parsed, chunks, await self._results_dir(sub, paths), unique)
        except DuplicateContent as exc:
            rejected = IntakeRejected([Problem(0, duplicate_reason(exc.earlier))])
            await self._reject(sub, paths, processing, rejected)
            return False
        return True

    async def _read(
        self, sub: Submission, processing: Path
    ) -> tuple[ParsedFile, list[ChunkPlan]] | IntakeRejected:
        return await asyncio.to_thread(self._read_and_split, sub, processing)

    def _read_and_split(
        self, sub: Submission, processing: Path
    ) -> tuple[ParsedFile, list[ChunkPlan]] | IntakeRejected:
        """Validate, plan and write the chunks: one trip to a worker thread for all three."""
        try:
            provider = self._limits_for(sub.provider)
            parsed, chunks = validate_file(sub, processing, self._limits, provider)
            write_chunks(self._work, sub, processing, parsed, chunks)
        except IntakeRejected as exc:
            return exc
        return parsed, chunks

    async def _settle(
        self, sub: Submission, paths: SpoolPaths, processing: Path, decision: Decision
    ) -> bool:
        if isinstance(decision, Wait):
            if self.settle.first_wait(sub.id):  # once, not on every look
                log.info(
                    "intake.still_being_written",
                    submission_id=sub.id,
                    name=sub.name,
                    look_again_in_s=round(max(0.0, decision.until - self._clock.now()), 1),
                )
            return False
        if isinstance(decision, GiveUp):
            rejected = IntakeRejected([Problem(0, decision.reason)])
            await self._reject(sub, paths, processing, rejected)
            return False
        return True

    async def _accept(
        self,
        sub: Submission,
        parsed: ParsedFile,
        chunks: list[ChunkPlan],
        results_dir: Path,
        unique: bool,
    ) -> None:
        mismatch = model_mismatch(sub.model, parsed.models)
        await self._store.accept_submission(
            sub.id,
            sha256=parsed.sha256,
            line_count=parsed.request_count,
            results_dir=str(results_dir),
            chunks=chunks,
            now=self._clock.now(),
            unique=unique,
            event=EventSpec(
                "submission.accepted",
                {
                    "submission_id": sub.id,
                    "route": sub.route,
                    "name": sub.name,
                    "requests": parsed.request_count,
                    "chunks": len(chunks),
                    "assigned_custom_ids": parsed.assigned_ids,
                    "sha256": parsed.sha256,
                    **({"model_mismatch": mismatch} if mismatch else {}),
                },
            ),
        )
        if mismatch:
            log.warning(
                "intake.model_mismatch",
                submission_id=sub.id,
                name=sub.name,
                note="one job runs one model: the route's model answers every request",
                **mismatch,
            )

    async def _results_dir(self, sub: Submission, paths: SpoolPaths) -> Path:
        """``done/<name>/``: the collector puts the newest run of a name there and moves older
        ones aside (``batchd.placement``)."""
        return paths.done / sub.name.removesuffix(".jsonl")

    async def _reject(
        self, sub: Submission, paths: SpoolPaths, processing: Path, exc: IntakeRejected
    ) -> None:
        self._work.remove(sub.id)  # chunks written before the rejection, if any
        dest = rejected_name(paths, sub)
        reason = format_reason(exc, sub.name).encode()
        modes = self._modes
        place_with_reason(
            processing,
            dest,
            reason_path(dest).name,
            reason,
            file_mode=modes.file,
            folder_mode=modes.folder,
            companions=[(sidecars.sidecar_of(processing), sidecars.sidecar_of(dest).name)],
        )  # its options go with it
        await self._finalize_reject(sub, dest, exc.problems)

    async def _finalize_reject(self, sub: Submission, dest: Path, problems: list[Problem]) -> None:
        reason = str(problems[0]) if problems else "rejected"
        await self._store.reject_submission(
            sub.id,
            reason,
            now=self._clock.now(),
            event=EventSpec(
                "submission.rejected",
                {
                    "submission_id": sub.id,
                    "route": sub.route,
                    "name": sub.name,
                    "reason": reason,
                    "problems": [str(p) for p in problems[:5]],
                    "problem_count": len(problems),
                    "rejected_path": str(dest),
                },
            ),
        )
        log.warning("intake.rejected", submission_id=sub.id, name=sub.name, reason=reason)

    async def _recover_rejected(self, sub: Submission, paths: SpoolPaths) -> None:
        """The file left processing/ without the rejection being committed: finish it."""
        for dest in rejected_candidates(paths, sub):
            ident = lstat_identity(dest)
            if ident is not None and ident.ino == _folder(sub).ino:
                reason_file = reason_path(dest)
                text = reason_file.read_text() if reason_file.exists() else ""
                problem = first_problem(text)
                await self._finalize_reject(sub, dest, [problem])
                return
        await self._finalize_reject(
            sub, paths.processing, [Problem(0, "the file vanished from processing/")]
        )

    # ------------------------------------------------------------------ giving up
    async def give_up(self, sub: Submission, route: RouteLike, reason: str) -> None:
        """Reject an open submission whose claim or validation kept failing: its file (in
        processing/, or still in the inbox) moves to rejected/ with ``reason``."""
        paths = spool_paths(route)
        ino = _folder(sub).ino
        processing = Path(_folder(sub).processing)
        found = lstat_identity(processing)
        source = processing if found is not None and found.ino == ino else None
        if source is None:
            source = find_in_inbox(paths.inbox, sub.name, ino)
        if source is None:
            await self._recover_rejected(sub, paths)
            return
        await self._reject(sub, paths, source, IntakeRejected([Problem(0, reason)]))

    async def give_up_unclaimed(self, route: RouteLike, name: str, reason: str) -> Path | None:
        """Move an inbox file that could not even be claimed (no submission row) to rejected/
        under a safe name, with ``reason``. Returns where it went (None: it is gone)."""
        dest = await asyncio.to_thread(
            move_aside, spool_paths(route), name, reason, self._modes.file
        )
        if dest is not None:
            log.warning(
                "intake.rejected",
                route=route.name,
                name=display_name(name),
                reason=reason,
                rejected_path=str(dest),
            )
        return dest

    # ------------------------------------------------------------------ recovery
    async def resume(self, sub: Submission, route: RouteLike, *, settle_s: float = 0.0) -> bool:
        """Finish a CLAIMING or CLAIMED submission (left by an earlier process or pass)."""
        if sub.state is SubmissionState.CLAIMING:
            sub = await self._finish_claim(sub, spool_paths(route), _folder(sub).ino)
        if sub.state is SubmissionState.CLAIMED:
            return await self.process(sub, route, settle_s=settle_s)
        return False


def _move_in(inbox: Path | None, processing: Path, sidecar_of: Path) -> None:
    """The file (unless it is already there) and its sidecar into processing/: one trip to a
    worker thread."""
    if inbox is not None:
        move(inbox, processing)
    sidecars.claim_sidecar(sidecar_of, processing)


def spool_paths(route: RouteLike) -> SpoolPaths:
    """The folders of a route's spool (``ValueError`` for a route without one)."""
    if route.spool is None:
        raise ValueError(f"route {route.name!r} has no spool")
    return SpoolPaths(route.spool)


def _folder(sub: Submission) -> FolderOrigin:
    origin = FolderOrigin.of(sub)
    if origin is None:
        raise ValueError(f"submission {sub.id} did not come from a drop folder")
    return origin
