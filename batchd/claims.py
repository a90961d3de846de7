"""Claim one dropped file, validate it, and accept or reject it: each step resumable.

The order is what makes a crash at any instant harmless (ARCHITECTURE invariant 2):

1. ``begin_claim`` commits a CLAIMING row naming the file's inode;
2. the file is renamed from inbox/ into processing/ (``mark_claimed``);
3. it is validated and split; chunk files are written to the work folder (deterministic, so
   redoing this after a crash writes the same bytes);
4. ``accept_submission`` commits the jobs and ``submission.accepted`` in one transaction, or the
   file moves to rejected/ with its reason and ``reject_submission`` commits the rejection.

``resume`` finishes whatever a previous process left half done, by looking for the inode.
"""

from __future__ import annotations

import asyncio
import os
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
    parse_batch_file,
)
from batchd.chunks import FileChanged, plan_chunks, write_chunk
from batchd.clock import Clock
from batchd.errors import IntakeRejected, Problem
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
from batchd.safe_folder import make_folders, place_with_reason
from batchd.settle import Decision, GiveUp, SettleGate, Wait, changed_since
from batchd.spool import (
    PRIVATE,
    Modes,
    SpoolPaths,
    UnsafeFile,
    display_name,
    lstat_identity,
    move,
    name_allowed,
    open_dropped,
)
from batchd.store.base import ChunkPlan, DuplicateContent, EventSpec, JobStore, NewSubmission
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)

# A file up to this size keeps its normalized lines from the parse (at most about twice this in
# memory while its chunks are written): they are written from memory instead of reading and
# parsing the file a second time. Larger files are read again, line by line.
PARSE_ONCE_UP_TO = 16 * 1024 * 1024

UNREADABLE = (
    "batchd cannot read this file (permission denied): in a shared drop folder, make it "
    "readable by the folder's group (mode 0640) before you drop it"
)


class RouteLike(sidecars.RouteDefaults, Protocol):
    """What claims need of a route (``config.RouteConfig`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def spool(self) -> Path: ...
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
    ) -> None:
        self._store = store
        self._work = work
        self._limits = limits
        self._limits_for = limits_for
        self._clock = clock
        self._reject_duplicates = reject_duplicates
        self._modes = modes
        self.settle = SettleGate(clock)

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
        paths = SpoolPaths(route.spool)
        ident = lstat_identity(paths.inbox / name)
        if ident is None:
            return None
        processing_name = f"{ident.ino}-{name}" if name_allowed(name) else f"{ident.ino}.jsonl"
        shown = display_name(name)  # what is stored, logged and written; the file keeps its name
        given = await asyncio.to_thread(sidecars.options_at_claim, paths.inbox / name)
        sub = await self._store.begin_claim(
            NewSubmission(
                route=route.name,
                name=shown,
                provider=route.provider,
                **sidecars.submission_options(route, given),
                inbox_path=str(paths.inbox / shown),
                processing_path=str(paths.processing / processing_name),
                size_bytes=ident.size_bytes,
                file_dev=ident.dev,
                file_ino=ident.ino,
            ),
            now=self._clock.now(),
        )
        self.settle.claimed(sub.id, renamed=renamed)
        metrics.claimed(route.name, sub.created_at - ident.mtime_ns / 1e9)
        return await self._finish_claim(sub, paths, ident.ino, inbox_name=name)

    async def _finish_claim(
        self, sub: Submission, paths: SpoolPaths, ino: int, *, inbox_name: str | None = None
    ) -> Submission:
        processing = Path(_required(sub.processing_path))
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
        processing = Path(_required(sub.processing_path))
        paths = SpoolPaths(route.spool)
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
            parsed, chunks = self._validate(sub, processing)
            self._write_chunks(sub, processing, parsed, chunks)
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

    def _validate(self, sub: Submission, processing: Path) -> tuple[ParsedFile, list[ChunkPlan]]:
        if not name_allowed(sub.name):
            raise IntakeRejected(
                [Problem(0, "file name not allowed: use [A-Za-z0-9._-], ending in .jsonl")]
            )
        try:
            fd, _ = open_dropped(processing.parent, processing.name, max_bytes=self._max_bytes)
        except UnsafeFile as exc:
            raise IntakeRejected([Problem(0, f"rejected: {exc}")]) from exc
        except PermissionError as exc:
            raise IntakeRejected([Problem(0, UNREADABLE)]) from exc
        os.close(fd)
        parsed = parse_batch_file(
            processing,
            endpoint=sub.endpoint,
            limits=self._limits,
            keep_lines_up_to=PARSE_ONCE_UP_TO,
        )
        provider = self._limits_for(sub.provider)
        chunks = plan_chunks(
            parsed.normalized_sizes,
            max_requests=provider.max_requests_per_job,
            max_bytes=provider.max_bytes_per_job,
            line_numbers=parsed.line_numbers,
        )
        return parsed, chunks

    @property
    def _max_bytes(self) -> int:
        return self._limits.max_file_bytes

    def _write_chunks(
        self, sub: Submission, processing: Path, parsed: ParsedFile, chunks: list[ChunkPlan]
    ) -> None:
        make_folders(self._work.submission(sub.id), 0o700, parents_mode=0o700)
        for chunk in chunks:
            dest = self._work.chunk(sub.id, chunk.index)
            write_chunk(processing, parsed, chunk, dest, endpoint=sub.endpoint)

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
            if ident is not None and ident.ino == _ino_of(sub):
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
        paths = SpoolPaths(route.spool)
        ino = _ino_of(sub)
        processing = Path(_required(sub.processing_path))
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
            move_aside, SpoolPaths(route.spool), name, reason, self._modes.file
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
            sub = await self._finish_claim(sub, SpoolPaths(route.spool), _ino_of(sub))
        if sub.state is SubmissionState.CLAIMED:
            return await self.process(sub, route, settle_s=settle_s)
        return False


def _move_in(inbox: Path | None, processing: Path, sidecar_of: Path) -> None:
    """The file (unless it is already there) and its sidecar into processing/: one trip to a
    worker thread."""
    if inbox is not None:
        move(inbox, processing)
    sidecars.claim_sidecar(sidecar_of, processing)


def _required(value: str | None) -> str:
    if value is None:
        raise ValueError("submission row is missing a path")
    return value


def _ino_of(sub: Submission) -> int:
    # The inode is the last part of the processing name: "<ino>-<name>" or "<ino>.jsonl".
    name = Path(_required(sub.processing_path)).name
    return int(name.split("-", 1)[0].split(".", 1)[0])


def duplicate_reason(earlier: Submission) -> str:
    """Why content already submitted as ``earlier`` is refused (also ``batchd submit``'s)."""
    where = f"results in {earlier.results_dir}" if earlier.results_dir else earlier.state
    return (
        f"duplicate: the same content was submitted as {earlier.name} "
        f"(submission {earlier.id}, {where}); to submit it again anyway, drop it with "
        'a sidecar {"allow_duplicate": true} (batchd submit --allow-duplicate), '
        'or set duplicates = "allow" in [intake]'
    )
