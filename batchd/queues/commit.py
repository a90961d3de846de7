"""Committing what a queue source took: a flush record first, then the store, then the ack.

A flush (auto-batched requests, or one batch message) is made durable in this order, so that a
crash at any instant neither loses a message nor submits one twice:

1. the batch file is written into ``<spool>/processing/<source>/`` as ``<inode>-<name>`` (as
   intake names a claimed file) and a *flush record* (``Flush``: its route, name, file, and the
   keys of the messages in it) into ``<data_dir>/queues/<source>/``, both fsynced;
2. ``commit`` claims, validates and accepts the file through the intake's ``Claimer`` (the same
   validation, splitting and duplicate rules as a dropped file); it is idempotent: it finds the
   submission of that file again (or claims it) and finishes it, so it is redone after a crash;
3. the messages are acknowledged, and the record is removed.

A message redelivered after a crash between 2 and 3 has a key (its message id, or its route and
custom_id) that a remaining record holds: it is recognised, its record committed (a no-op when
it is already accepted) and the message acknowledged, never batched again.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from batchd import options as sidecars
from batchd.claims import Claimer, RouteLike, spool_paths
from batchd.clock import Clock
from batchd.folder_origin import FolderOrigin
from batchd.models import Submission, SubmissionState
from batchd.safe_folder import make_folders
from batchd.spool import lstat_identity, write_atomic
from batchd.store.base import JobStore, NewSubmission

log = structlog.get_logger(__name__)

PAGE = 500


@dataclass(frozen=True, slots=True)
class Flush:
    """One batch file on its way into the store, and the messages it holds."""

    token: str
    route: str
    name: str
    path: str  # <spool>/processing/<source>/<inode>-<name>
    keys: tuple[str, ...]
    written_at: float = 0.0
    batch: bool = False  # a batch message (False: auto-batched requests)
    replies: dict[str, str] = field(default_factory=dict)  # custom_id -> reply_to


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool
    submission_id: str
    reason: str | None = None  # why it was rejected


def folder_of(route: RouteLike, source: str) -> Path:
    return spool_paths(route).processing / source


def is_queued(sub: Submission, route: RouteLike, source: str) -> bool:
    """Whether ``sub``'s file was written by ``source`` (not dropped into the inbox)."""
    origin = FolderOrigin.of(sub)
    return origin is not None and Path(origin.processing).parent == folder_of(route, source)


class Committer:
    """Writes flush records and batch files for one source and commits them (idempotent)."""

    def __init__(
        self,
        store: JobStore,
        claimer: Claimer,
        *,
        source: str,
        records: Path,
        routes: Sequence[RouteLike],
        clock: Clock,
    ) -> None:
        self._store = store
        self._claimer = claimer
        self._source = source
        self._records = records
        self._clock = clock
        self.set_routes(routes)

    def set_routes(self, routes: Sequence[RouteLike]) -> None:
        self._routes = {r.name: r for r in routes}

    # ------------------------------------------------------------------ records
    def load(self) -> list[Flush]:
        """The flush records left by an earlier run (oldest first)."""
        if not self._records.exists():
            return []
        found = []
        for path in sorted(self._records.glob("*.json"), key=lambda p: p.stat().st_mtime):
            data = json.loads(path.read_bytes())
            found.append(Flush(**{**data, "keys": tuple(data["keys"])}))
        return found

    def write(
        self,
        route: RouteLike,
        name: str,
        data: bytes,
        keys: Iterable[str],
        *,
        batch: bool = False,
        replies: dict[str, str] | None = None,
    ) -> Flush:
        """Step 1: the batch file (with a sidecar allowing duplicates for an auto-batch) and
        its record, both durable before anything is committed."""
        folder = folder_of(route, self._source)
        make_folders(folder, 0o700, parents_mode=0o700)
        make_folders(self._records, 0o700, parents_mode=0o700)
        temp = folder / f".{secrets.token_hex(8)}.tmp"
        write_atomic(temp, data)
        final = folder / f"{temp.stat().st_ino}-{name}"
        os.rename(temp, final)
        if not batch:  # an auto-batch: the same requests may recur
            write_atomic(sidecars.sidecar_of(final), b'{"allow_duplicate": true}')
        _fsync_dir(folder)
        token = secrets.token_hex(8)
        flush = Flush(
            token,
            route.name,
            name,
            str(final),
            tuple(keys),
            self._clock.now(),
            batch,
            replies or {},
        )
        write_atomic(self._records / f"{flush.token}.json", json.dumps(asdict(flush)).encode())
        return flush

    def forget(self, flush: Flush) -> None:
        """Step 3 done: every message of this flush is acknowledged."""
        (self._records / f"{flush.token}.json").unlink(missing_ok=True)

    # ------------------------------------------------------------------ the store
    async def commit(self, flush: Flush) -> Outcome:
        """Step 2, idempotent: claim the file (unless done before), validate and accept it."""
        route = self._routes.get(flush.route)
        if route is None:
            raise LookupError(f"route {flush.route!r} is no longer configured")
        sub = await self._find(flush)
        if sub is None:
            sub = await self._claim(flush, route)
        if sub.state in (SubmissionState.CLAIMING, SubmissionState.CLAIMED):
            self._claimer.settle.claimed(sub.id, renamed=True)  # complete: no writer to wait for
            await self._claimer.resume(sub, route)
            sub = await self._store.get_submission(sub.id) or sub
        if sub.state in (SubmissionState.ACTIVE, SubmissionState.DONE):
            return Outcome(True, sub.id)
        if sub.state in (SubmissionState.CLAIMING, SubmissionState.CLAIMED):
            raise RuntimeError(f"submission {sub.id} is still being validated")
        return Outcome(False, sub.id, sub.reason or str(sub.state))

    async def _claim(self, flush: Flush, route: RouteLike) -> Submission:
        path = Path(flush.path)
        ident = lstat_identity(path)
        if ident is None:
            raise FileNotFoundError(f"{path}: the batch file of flush {flush.token} is missing")
        given = await asyncio.to_thread(sidecars.read_options, path, flush.name)
        return await self._store.begin_claim(
            NewSubmission(
                route=route.name,
                name=flush.name,
                provider=route.provider,
                **sidecars.submission_options(route, given),
                size_bytes=ident.size_bytes,
                origin=FolderOrigin(
                    host=self._claimer.host.id,
                    inbox=str(path),
                    processing=str(path),
                    dev=ident.dev,
                    ino=ident.ino,
                ).to_json(),
            ),
            now=self._clock.now(),
        )

    async def _find(self, flush: Flush) -> Submission | None:
        """The submission of this flush's file, if it was claimed (newest first, paged)."""
        after = None
        while True:
            page = await self._store.list_submissions(route=flush.route, limit=PAGE, after=after)
            for sub in page:
                origin = FolderOrigin.of(sub)
                found = origin is not None and origin.processing == flush.path
                if found and sub.state is not SubmissionState.ABANDONED:
                    return sub
            if len(page) < PAGE:
                return None
            after = page[-1].id

    async def open_submissions(self) -> list[Submission]:
        """This source's submissions still being claimed or validated (a crash left them)."""
        routes = self._routes
        open_states = [SubmissionState.CLAIMING, SubmissionState.CLAIMED]
        return [
            sub
            for sub in await self._store.list_submissions(states=open_states)
            if sub.route in routes and is_queued(sub, routes[sub.route], self._source)
        ]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
