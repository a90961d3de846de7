"""Where a finished submission's results go, when a name is dropped more than once.

The rule: ``done/<name>/`` always holds the newest run of that name (the one submitted last);
older runs are kept beside it as ``done/<name>.<submission id>/``. A program that reads
``done/<name>/summary.json`` therefore reads the newest run, and every run stays findable by its
submission id (``batchd jobs show ID`` prints its folder).

A run is written into a hidden staging folder ``done/.<name>.<submission id>.part/`` first, then
renamed into place, so that ``done/<name>/`` never holds half of a run. Every step can be redone
after a crash: a run already in place is recognised by the ``submission_id`` of its
``summary.json``. A folder at ``done/<name>/`` without a batchd summary (made by someone else) is
left alone, and the run goes to ``done/<name>.<submission id>/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
FOREIGN = "<foreign>"  # a folder whose summary.json does not name a batchd submission


def staging_dir(public: Path, submission_id: str) -> Path:
    return public.with_name(f".{public.name}.{submission_id}.part")


def archive_dir(public: Path, submission_id: str) -> Path:
    return public.with_name(f"{public.name}.{submission_id}")


def owner(folder: Path) -> str | None:
    """The submission whose results are in ``folder`` (None: no folder; FOREIGN: not ours)."""
    if not folder.is_dir() or folder.is_symlink():
        return None if not folder.exists() and not folder.is_symlink() else FOREIGN
    try:
        found = json.loads((folder / SUMMARY).read_bytes()).get("submission_id")
    except (OSError, ValueError, AttributeError):
        return FOREIGN
    return found if isinstance(found, str) and found.startswith("sub_") else FOREIGN


@dataclass(frozen=True, slots=True)
class Placement:
    target: Path  # where the run ends up
    displace: str | None = None  # the older run at done/<name>/ to move aside first


def decide(public: Path, submission_id: str, occupant: str | None) -> Placement:
    """Pure: where a new run goes, given who holds ``done/<name>/``. Submission ids sort by
    creation time (``models.new_id``), so the newer of two runs is the greater id."""
    if occupant is None or occupant == submission_id:
        return Placement(public)
    if occupant == FOREIGN or occupant > submission_id:
        return Placement(archive_dir(public, submission_id))
    return Placement(public, displace=occupant)


def placed(public: Path, submission_id: str) -> Path | None:
    """Where this run already is (a crash came after it was renamed into place), if anywhere."""
    for folder in (public, archive_dir(public, submission_id)):
        if owner(folder) == submission_id:
            return folder
    return None


def retarget_summary(summary: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``summary`` with its file paths pointing into ``folder`` (after a move)."""
    files = summary.get("files")
    if isinstance(files, dict):
        summary = {
            **summary,
            "files": {k: str(folder / Path(str(v)).name) for k, v in files.items()},
        }
    return summary
