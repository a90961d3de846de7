"""The drop-folder contract on disk: paths, safe opening of dropped files, atomic writes.

Per route::

    <spool>/inbox/       users write elsewhere (or as a dotfile / *.part) and rename in
    <spool>/processing/  claimed by batchd (``<submission id>.jsonl``)
    <spool>/done/<name>/ input.jsonl, results.jsonl, errors.jsonl, summary.json
    <spool>/rejected/    <name>.jsonl and <name>.reason.txt

Nothing here builds a path from file *content*; names come from directory listings (one path
component, never containing ``/``) and are checked against an allow-list before use.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.jsonl")
SIDECAR_SUFFIX = ".json"  # <name>.jsonl.json overrides the route for one submission

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SpoolPaths:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def processing(self) -> Path:
        return self.root / "processing"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def ensure(self, modes: Modes | None = None) -> None:
        """Create the four folders with explicit modes, whatever the umask: the root 0750,
        inbox/ 3770 (group-writable, setgid and sticky, as systemd/batchd.tmpfiles makes it),
        processing/ 0700, done/ and rejected/ ``modes.folder``. Existing folders keep their
        modes (tmpfiles.d may have made them), except that a group- or world-writable root gets
        the sticky bit; none of the four may be a symbolic link (``UnsafeFolder``)."""
        from batchd.safe_folder import UnsafeFolder, make_folders, sticky_if_shared

        folder = (modes or PRIVATE).folder
        make_folders(self.root, 0o750)
        try:
            sticky_if_shared(self.root)
        except PermissionError:  # not ours: the writers still refuse links, but say so
            log.warning(
                "spool.root_unprotected",
                spool=str(self.root),
                problem="group- or world-writable without the sticky bit, and not batchd's to "
                "change: another user can replace done/ or rejected/ (results then wait)",
                fix=f"chmod +t {self.root}",
            )
        for path, mode in (
            (self.inbox, 0o3770),
            (self.processing, 0o700),
            (self.done, folder),
            (self.rejected, folder),
        ):
            if path.is_symlink():
                raise UnsafeFolder(f"{path} is a symbolic link; batchd does not use it")
            make_folders(path, mode)


def is_ignored(name: str) -> bool:
    """Names intake never looks at: dotfiles, writers' ``*.part`` files, and sidecars."""
    return name.startswith(".") or name.endswith(".part") or name.endswith(".jsonl.json")


def name_allowed(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


def display_name(name: str) -> str:
    """``name`` safe to store, print and write into a reason file: bytes that are not UTF-8
    (``os.fsdecode``'s surrogate escapes) become ``\\xNN``; control and format characters
    (newlines, terminal escapes, bidi controls) and non-space separators become ``\\xNN``,
    ``\\uNNNN`` or ``\\UNNNNNNNN``; everything else is kept. Idempotent (a backslash is kept as
    it is), and an allowed name is returned unchanged."""
    if name.isprintable():
        return name
    return "".join(ch if ch.isprintable() else _escape_char(ord(ch)) for ch in name)


def _escape_char(code: int) -> str:
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode carries it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class UnsafeFile(Exception):
    """The dropped entry is not a plain, private, regular file (symlink, FIFO, device, hard
    link, too large). The message is the reason given to the user."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    dev: int
    ino: int
    size_bytes: int
    mtime_ns: int


def open_dropped(directory: Path, name: str, *, max_bytes: int) -> tuple[int, FileIdentity]:
    """Open ``directory/name`` without following links or blocking on FIFOs, and check what it
    is through the open descriptor. Returns the fd (caller closes) and its identity."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile("a symbolic link; drop the file itself") from exc
        raise
    finally:
        os.close(dir_fd)
    try:
        identity = _check_fd(fd, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, identity


def _check_fd(fd: int, max_bytes: int) -> FileIdentity:
    st = os.fstat(fd)
    if stat.S_ISFIFO(st.st_mode):
        raise UnsafeFile("a FIFO, not a regular file")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise UnsafeFile("a device, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile("not a regular file")
    if st.st_nlink != 1:
        raise UnsafeFile(f"a hard link ({st.st_nlink} names); drop a copy instead")
    if st.st_size > max_bytes:
        raise UnsafeFile(f"{st.st_size} bytes, over the limit of {max_bytes} bytes")
    return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def lstat_identity(path: Path) -> FileIdentity | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# ------------------------------------------------------------------------------ atomic writes


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Modes:
    """The modes of what batchd writes into the spool (results, rejection reasons)."""

    file: int = 0o600
    folder: int = 0o700


PRIVATE = Modes()
# ``[daemon] share_with_group``: members of the spool's group (a shared drop folder, see
# systemd/README.md) can read results and rejection reasons.
GROUP_READABLE = Modes(file=0o640, folder=0o750)


def make_folder(path: Path, mode: int) -> None:
    """``mkdir -p`` with exactly ``mode`` on the last folder, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    os.chmod(path, mode)


@contextlib.contextmanager
def atomic_writer(final: Path, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Write ``final`` whole or not at all: a temp file in the same folder (O_EXCL) with
    exactly ``mode`` (whatever the umask), fsync, rename over ``final``, fsync the folder. On
    error the temp file is removed."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.part")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def write_atomic(final: Path, data: bytes, *, mode: int = 0o600) -> None:
    with atomic_writer(final, mode=mode) as handle:
        handle.write(data)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_noreplace(src: Path, dst: Path) -> None:
    """``rename`` that fails with ``FileExistsError`` instead of replacing ``dst``
    (``renameat2(RENAME_NOREPLACE)``; where the kernel or filesystem lacks it, a check just
    before a plain rename)."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        old, new = os.fsencode(src), os.fsencode(dst)
        if renameat2(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def move(src: Path, dst: Path) -> None:
    """Rename within one filesystem and make it durable (both folders fsynced)."""
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete our own leftover ``.<name>.<pid>.part`` temp files (after a crash)."""
    removed = 0
    pattern = re.compile(r"\..+\.\d+\.part")
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed += 1
    return removed
