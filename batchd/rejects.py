"""Where a rejected file goes: a safe name in rejected/ and its ``<name>.reason.txt``; finding a
claimed file again (in the inbox under a name that is stored escaped); reading a reason back."""

from __future__ import annotations

import os
from pathlib import Path

from batchd.batchfile import format_reason
from batchd.errors import IntakeRejected, Problem
from batchd.models import Submission
from batchd.safe_folder import place_with_reason
from batchd.spool import SpoolPaths, display_name, lstat_identity, name_allowed


def find_in_inbox(inbox: Path, name: str, ino: int) -> Path | None:
    """The inbox entry called ``name`` with inode ``ino``. ``name`` may be the stored, escaped
    form of a name that is not printable (see ``display_name``): then the entry whose escaped
    name and inode match is looked for."""
    found = lstat_identity(inbox / name)
    if found is not None and found.ino == ino:
        return inbox / name
    if "\\" not in name:
        return None
    try:
        with os.scandir(inbox) as entries:
            return next(
                (
                    Path(e.path)
                    for e in entries
                    if e.inode() == ino and e.name != name and display_name(e.name) == name
                ),
                None,
            )
    except FileNotFoundError:
        return None


def move_aside(paths: SpoolPaths, name: str, reason: str, mode: int) -> Path | None:
    """``inbox/name`` to rejected/ (under a safe name) with its reason file, no row needed."""
    ident = lstat_identity(paths.inbox / name)
    if ident is None:
        return None
    safe = name if name_allowed(name) else f"unnamed-{ident.ino}.jsonl"
    dest = paths.rejected / safe
    if os.path.lexists(dest):
        dest = paths.rejected / f"{safe.removesuffix('.jsonl')}-{ident.ino}.jsonl"
    text = format_reason(IntakeRejected([Problem(0, reason)]), name).encode()
    folder = 0o750 if mode & 0o040 else 0o700  # rejected/ if missing: as the results'
    place_with_reason(
        paths.inbox / name, dest, reason_path(dest).name, text, file_mode=mode, folder_mode=folder
    )
    return dest


def rejected_candidates(paths: SpoolPaths, sub: Submission) -> list[Path]:
    safe = sub.name if name_allowed(sub.name) else f"unnamed-{sub.id[-6:]}.jsonl"
    stem = safe.removesuffix(".jsonl")
    return [paths.rejected / safe, paths.rejected / f"{stem}-{sub.id[-6:]}.jsonl"]


def rejected_name(paths: SpoolPaths, sub: Submission) -> Path:
    first, second = rejected_candidates(paths, sub)
    return second if first.exists() or first.is_symlink() else first


def reason_path(dest: Path) -> Path:
    return dest.with_name(dest.name.removesuffix(".jsonl") + ".reason.txt")


def first_problem(reason_text: str) -> Problem:
    for line in reason_text.splitlines():
        if line.startswith("line "):
            number, _, reason = line.removeprefix("line ").partition(": ")
            if number.isdigit():
                return Problem(int(number), reason)
    return Problem(0, "rejected (recovered after a restart)")
