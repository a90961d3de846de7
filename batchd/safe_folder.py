"""Writing into the spool with explicit modes and without following symbolic links.

A spool's root (and the data folder) is configured by the administrator and taken as it is.
What lies below it (``done/``, ``rejected/``, a results folder) could be replaced by a symbolic
link by anyone allowed to write to the folder above it, and batchd must never write results or
reasons where such a link points. So ``Folder.open`` opens every folder below the trusted base
with ``O_NOFOLLOW``, relative to its parent's descriptor, and files are then created
(``O_EXCL | O_NOFOLLOW``), renamed and synced relative to the folder's descriptor: a link is
refused with ``UnsafeFolder`` (which says where and why), never followed.

Modes never depend on the umask: a folder created here gets exactly its mode (``fchmod``), and so
does every file written. A file moved in (``input.jsonl``, a rejected copy) gets the results'
mode when batchd owns it (a file dropped by another user keeps the mode its owner gave it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP = re.compile(r"\..+\.\d+\.part")


class UnsafeFolder(Exception):
    """A folder batchd writes into is a symbolic link (or not a folder): nothing was written."""


def make_folders(path: Path, mode: int, *, parents_mode: int = 0o755) -> bool:
    """``mkdir -p`` with explicit modes whatever the umask: ``path`` gets ``mode`` and missing
    parents ``parents_mode``, exactly, when created here; existing folders are left as they
    are. True when ``path`` was created."""
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    for folder in reversed(missing):
        wanted = mode if folder == path else parents_mode
        try:
            os.mkdir(folder, wanted)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs, as it is
        os.chmod(folder, wanted)
    return path in missing


def sticky_if_shared(folder: Path) -> bool:
    """Add the sticky bit to ``folder`` when it is group- or world-writable: then only the owner
    of an entry (batchd, for ``done/`` and ``rejected/``) can rename or replace it. True when
    the bit was added."""
    mode = os.stat(folder).st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        os.chmod(folder, stat.S_IMODE(mode) | stat.S_ISVTX)
        return True
    return False


class Folder:
    """A folder held by its descriptor; names are resolved relative to it, never followed."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path, *, below: int = 1, mode: int | None = None) -> Folder:
        """Open ``path``, its last ``below`` components without following links. A missing
        one is created with exactly ``mode`` (None: it must exist)."""
        base = Path(*path.parts[: len(path.parts) - below]) if below else path
        fd = os.open(base, _DIR)
        current = base
        for name in path.parts[len(path.parts) - below :] if below else ():
            current = current / name
            fd = _open_below(fd, name, current, mode)
        return cls(fd, path)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def chmod(self, mode: int) -> None:
        os.fchmod(self.fd, mode)

    def sync(self) -> None:
        os.fsync(self.fd)

    @contextlib.contextmanager
    def writer(self, name: str, *, mode: int) -> Iterator[BinaryIO]:
        """Write ``name`` whole or not at all: a temp file (``O_EXCL | O_NOFOLLOW``) with
        exactly ``mode``, fsync, rename over ``name`` (a link there is replaced, not followed),
        fsync the folder."""
        temp = f".{name}.{os.getpid()}.part"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=self.fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=self.fd)
            raise
        self.sync()

    def write(self, name: str, data: bytes, *, mode: int) -> None:
        with self.writer(name, mode=mode) as handle:
            handle.write(data)

    def move_in(self, source: Path, name: str, *, mode: int | None = None) -> None:
        """Rename ``source`` (in a folder of batchd's own) to ``name`` here, durably; first
        give it ``mode`` if batchd owns it."""
        if mode is not None:
            _chmod_own(source, mode)
        os.rename(source, name, dst_dir_fd=self.fd)
        self.sync()
        fd = os.open(source.parent, _DIR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, old: str, new: str) -> None:
        """Rename an entry of this folder, durably (the entry itself, never what it points to)."""
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        self.sync()

    def remove_stale_temp_files(self) -> int:
        """Delete our own leftover ``.<name>.<pid>.part`` temp files (after a crash)."""
        removed = 0
        with os.scandir(self.fd) as entries:
            names = [e.name for e in entries if _TEMP.fullmatch(e.name) and not e.is_dir()]
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)
                removed += 1
        return removed


def place_with_reason(
    source: Path,
    dest: Path,
    reason_name: str,
    reason: bytes,
    *,
    file_mode: int,
    folder_mode: int,
    companions: Sequence[tuple[Path, str]] = (),
) -> None:
    """A rejection: the reason file, the ``companions`` that exist (a sidecar: source path, new
    name), then the file itself, into ``dest``'s folder (rejected/, opened without following
    links, created with ``folder_mode`` if missing); the copy gets ``file_mode`` when batchd
    owns it."""
    with Folder.open(dest.parent, below=1, mode=folder_mode) as rejected:
        rejected.write(reason_name, reason, mode=file_mode)
        for path, name in companions:
            if os.path.lexists(path):
                rejected.move_in(path, name)
        rejected.move_in(source, dest.name, mode=file_mode)


def _open_below(parent: int, name: str, path: Path, mode: int | None) -> int:
    """The folder ``name`` in ``parent`` (closed here), created with ``mode`` if missing."""
    try:
        created = False
        if mode is not None:
            try:
                os.mkdir(name, mode, dir_fd=parent)
                created = True
            except FileExistsError:
                pass
        try:
            fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                what = "a symbolic link" if _is_link(parent, name) else "not a folder"
                raise UnsafeFolder(
                    f"{path} is {what}; batchd does not write through it (make it a folder)"
                ) from exc
            raise
    finally:
        os.close(parent)
    if created and mode is not None:
        os.fchmod(fd, mode)
    return fd


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _chmod_own(path: Path, mode: int) -> None:
    """``chmod`` a regular file through a descriptor opened without following links; a file
    owned by someone else (or a link, FIFO or device being rejected) keeps its mode."""
    with contextlib.suppress(OSError):
        if not stat.S_ISREG(path.lstat().st_mode):
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_uid == os.geteuid() or os.geteuid() == 0:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
