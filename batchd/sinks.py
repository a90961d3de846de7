"""Where a finished submission's results go: the ``ResultSink`` seam, and the folder sink.

The collector decides what the results are (which lines, the outcome, the summary); a sink
decides where they are written and how they reach the user. One run of a sink per finished
submission, in three steps, each redone from the start after a crash until the submission is
committed DONE:

1. ``start(sub)`` chooses where the run goes; its ``location`` is named in ``summary.json`` and
   in the ``results.ready`` event (``results_dir``);
2. ``write_results(jobs, parse)`` writes the merged results and returns their tally;
3. ``finish(summary)`` writes the summary, hands the input back and makes the run visible; it
   returns the location to remember in the store (None: nothing to remember).

``FolderSink`` (the default) writes ``done/<name>/`` in the route's spool: results.jsonl in
input order, errors.jsonl, summary.json, input.jsonl (and the sidecar), an older run of the same
name moved aside (``batchd.placement``).

**Choosing the sink** (``Sinks``): by the submission's origin (``Submission.origin["source"]``).
A source that wants its results back where the work came from (a reply queue, the HTTP API)
registers its sink under its source name (``Collector.register_sink``); a submission without an
origin, or from a source without a sink of its own, goes to the default. Each registration says
which submissions this instance can serve: a drop folder's only on the host that saw the file
(``folder_origin.Host.sees``), since its paths are that host's; the others are left to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from batchd.folder_origin import FolderOrigin
from batchd.models import Submission, SubmissionState
from batchd.options import OPTIONS_IN_RESULTS, sidecar_of
from batchd.placement import (
    SUMMARY,
    Placement,
    archive_dir,
    decide,
    owner,
    placed,
    retarget_summary,
    staging_dir,
)
from batchd.results import JobFiles, ParseLine, Tally, write_results
from batchd.safe_folder import Folder
from batchd.spool import Modes, lstat_identity
from batchd.store.base import JobStore
from batchd.summary import dump_summary
from batchd.workdir import WorkDir

log = structlog.get_logger(__name__)


class SinkRun(Protocol):
    @property
    def location(self) -> Path: ...
    async def write_results(self, jobs: Sequence[JobFiles], parse: ParseLine) -> Tally: ...
    async def finish(self, summary: bytes) -> str | None: ...


class ResultSink(Protocol):
    async def start(self, sub: Submission) -> SinkRun: ...


@dataclass(frozen=True, slots=True)
class _Choice:
    sink: ResultSink
    serves: Callable[[Submission], bool]


class Sinks:
    """The sink of each submission, by its origin's source (see the module's docstring)."""

    def __init__(self, default: ResultSink) -> None:
        self._default = default
        self._by_source: dict[str, _Choice] = {}

    def register(
        self,
        source: str,
        sink: ResultSink,
        *,
        serves: Callable[[Submission], bool] = lambda sub: True,
    ) -> None:
        """Results of submissions whose origin names ``source`` go to ``sink``, on an instance
        where ``serves(sub)``; the other instances leave them to one that can."""
        self._by_source[source] = _Choice(sink, serves)

    def for_submission(self, sub: Submission) -> ResultSink | None:
        """Where ``sub``'s results go from this instance (None: not from here)."""
        source = (sub.origin or {}).get("source")
        choice = self._by_source.get(source) if isinstance(source, str) else None
        if choice is None:
            return self._default
        return choice.sink if choice.serves(sub) else None


class FolderSink:
    """Results into the route's ``done/<name>/`` (or the work folder when the submission has no
    results folder). ``modes`` is read at each run, so a reload's new modes apply."""

    def __init__(self, store: JobStore, work: WorkDir, modes: Callable[[], Modes]) -> None:
        self._store = store
        self._work = work
        self._modes = modes

    async def start(self, sub: Submission) -> FolderRun:
        public = Path(sub.results_dir or self._work.submission(sub.id) / "results")
        write_dir, placement = await asyncio.to_thread(_where, sub, public)
        return FolderRun(self._store, sub, public, write_dir, placement, self._modes())


@dataclass
class FolderRun:
    store: JobStore
    sub: Submission
    public: Path
    write_dir: Path
    placement: Placement
    modes: Modes

    @property
    def location(self) -> Path:
        return self.placement.target

    async def write_results(self, jobs: Sequence[JobFiles], parse: ParseLine) -> Tally:
        return await asyncio.to_thread(write_results, self.write_dir, jobs, parse, modes=self.modes)

    async def finish(self, summary: bytes) -> str | None:
        await asyncio.to_thread(_write_summary, self.write_dir, summary, self.modes)
        await asyncio.to_thread(_move_input, self.sub, self.write_dir, self.modes)
        if self.write_dir != self.location:
            await self._put_in_place()
        return str(self.location) if self.sub.results_dir else None

    async def _put_in_place(self) -> None:
        """Move the older run at ``done/<name>/`` aside (store first: a crash in between is
        redone from the summary still there), then rename the new run into place."""
        if self.placement.displace is not None:
            older = archive_dir(self.public, self.placement.displace)
            known = await self.store.get_submission(self.placement.displace)
            if known is not None and known.state is SubmissionState.DONE:
                await self.store.move_results(known.id, str(older))
            await asyncio.to_thread(_move_aside, self.public, older, self.modes)
            log.info(
                "collect.older_run_moved", submission_id=self.placement.displace, to=str(older)
            )
        await asyncio.to_thread(_rename_in_done, self.write_dir, self.location)


def _where(sub: Submission, public: Path) -> tuple[Path, Placement]:
    """Where to write this run's files, and where they end up (see ``batchd.placement``)."""
    if sub.results_dir is None:
        return public, Placement(public)
    already = placed(public, sub.id)
    if already is not None:  # renamed into place before a crash: finish it there
        return already, Placement(already)
    return staging_dir(public, sub.id), decide(public, sub.id, owner(public))


def _move_input(sub: Submission, results_dir: Path, modes: Modes) -> None:
    origin = FolderOrigin.of(sub)
    if origin is None:  # not a dropped file: no input to hand back
        return
    source = Path(origin.processing)
    with Folder.open(results_dir, below=2) as folder:  # done/ and the run's folder
        if lstat_identity(sidecar_of(source)) is not None:  # the file's options, if any
            folder.move_in(sidecar_of(source), OPTIONS_IN_RESULTS)
        if lstat_identity(source) is not None:
            folder.move_in(source, "input.jsonl", mode=modes.file)


def _move_aside(public: Path, older: Path, modes: Modes) -> None:
    _rename_in_done(public, older)
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((older / SUMMARY).read_bytes())
        _write_summary(older, dump_summary(retarget_summary(summary, older)), modes)


def _rename_in_done(old: Path, new: Path) -> None:
    """Rename a run's folder within done/ (opened without following links)."""
    with Folder.open(new.parent, below=1) as done:
        done.rename(old.name, new.name)


def _write_summary(folder: Path, data: bytes, modes: Modes) -> None:
    with Folder.open(folder, below=2, mode=modes.folder) as run:  # done/ and the run's folder
        run.write(SUMMARY, data, mode=modes.file)
