"""``batchd submit``: validate a file, then copy it into a route's inbox atomically.

The copy is written as ``.<name>.<random>.part`` inside the inbox (ignored by intake; a name
of its own, so two submits never write into one file), fsynced, then renamed to ``<name>``
without replacing a file of that name: intake sees a complete file appear at once
(``IN_MOVED_TO``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchd.batchfile import FileLimits, parse_batch_file
from batchd.config import Settings
from batchd.errors import UsageError
from batchd.spool import SpoolPaths, fsync_dir, name_allowed, rename_noreplace

COPY_MODE = 0o640  # readable by the batchd group through the setgid inbox


@dataclass(frozen=True, slots=True)
class Prepared:
    """A file checked and ready to be copied into ``inbox`` as ``name``."""

    source: Path
    route: str
    inbox: Path
    name: str
    sha256: str | None  # of the file's bytes (as intake computes it); None when not validated


def submit_file(
    settings: Settings,
    source: Path,
    *,
    route: str | None = None,
    name: str | None = None,
    validate: bool = True,
) -> Path:
    ready = prepare(settings, source, route=route, name=name, validate=validate)
    return copy_into(source, ready.inbox, ready.name)


def prepare(
    settings: Settings,
    source: Path,
    *,
    route: str | None = None,
    name: str | None = None,
    validate: bool = True,
    progress: Callable[[int], None] | None = None,
    endpoint: str | None = None,
) -> Prepared:
    """Choose the route and name, validate the file as intake would (``IntakeRejected``),
    and check that the inbox exists."""
    chosen = settings.route(route) if route else settings.routes[0]
    name = name or source.name
    if not name_allowed(name):
        raise UsageError(
            f"{name!r}: names are [A-Za-z0-9._-], start with a letter or digit, end in .jsonl"
        )
    sha256 = None
    if validate:
        limits = settings.intake
        parsed = parse_batch_file(
            source,
            endpoint=endpoint or chosen.endpoint,
            limits=FileLimits(
                max_file_bytes=limits.max_file_bytes,
                max_line_bytes=limits.max_line_bytes,
                max_lines=limits.max_lines,
            ),
            progress=progress,
        )
        sha256 = parsed.sha256
    if chosen.spool is None:
        raise UsageError(
            f"route {chosen.name!r} has no spool (it is fed by another source): batchd submit "
            "drops files into a route's spool; choose a route with one (--route)"
        )
    inbox = SpoolPaths(chosen.spool).inbox
    if not inbox.is_dir():
        raise UsageError(f"{inbox} does not exist: is batchd running with this configuration?")
    return Prepared(source, chosen.name, inbox, name, sha256)


def file_sha256(path: Path) -> str:
    """The digest intake records for a file (of its bytes as they are)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def copy_into(source: Path, inbox: Path, name: str) -> Path:
    target = inbox / name
    if target.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    temp = inbox / f".{name}.{secrets.token_hex(4)}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, COPY_MODE)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, length=1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        rename_noreplace(temp, target)  # a rename: intake sees a complete file (IN_MOVED_TO)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_dir(inbox)
    return target
