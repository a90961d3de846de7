"""Can batchd use its folders? Checked before ``batchd run`` starts and by ``batchd check``.

``daemon.data_dir`` (the database, the lock, the work files) and every route's spool must be
folders this process can create files in, or be creatable (their nearest existing parent is
such a folder). Each problem is one line naming the path and what is wrong with it, so a
misconfigured start stops with exit code 3 and that line instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

SPOOL_FOLDERS = ("inbox", "processing", "done", "rejected")
DATA_FILES = ("batchd.sqlite3", "batchd.sqlite3-wal", "batchd.sqlite3-shm", "batchd.lock")


class _Daemon(Protocol):
    @property
    def data_dir(self) -> Path: ...


class _Route(Protocol):
    @property
    def spool(self) -> Path | None: ...


class _Settings(Protocol):
    @property
    def daemon(self) -> _Daemon: ...
    @property
    def routes(self) -> Iterable[_Route]: ...


def folder_problems(settings: _Settings) -> list[str]:
    """Every problem with the data folder and the spools (empty: all usable)."""
    data_dir = settings.daemon.data_dir
    problems = data_dir_problems(data_dir)
    for i, route in enumerate(settings.routes):
        if route.spool is None:
            continue  # no drop folder: fed by another source
        if problems and data_dir in route.spool.parents:
            continue  # the data folder's problem is the spool's: said once
        problems += spool_problems(route.spool, f"routes[{i}].spool")
    return problems


def data_dir_problems(data_dir: Path) -> list[str]:
    """The data folder, and its database and lock files where they exist."""
    problems = _folder(data_dir, "daemon.data_dir")
    return problems or [p for name in DATA_FILES for p in _file(data_dir / name)]


def spool_problems(root: Path, key: str) -> list[str]:
    """The spool root and those of its four folders that exist; the root needs to be writable
    only while a folder is still to be created (a prepared spool may be read-only)."""
    try:
        return _spool(root, key)
    except OSError as exc:  # the spool, or a folder above it, that this user cannot search
        return _unreachable(exc, root, key)


def _spool(root: Path, key: str) -> list[str]:
    subfolders = [root / name for name in SPOOL_FOLDERS]
    if not (root.is_dir() and all(p.is_dir() for p in subfolders)):
        problems = _folder(root, key)
        if problems or not root.is_dir():
            return problems
    return [p for path in subfolders if os.path.lexists(path) for p in _subfolder(path, key)]


def _subfolder(path: Path, key: str) -> list[str]:
    if path.is_symlink():  # batchd never writes through one (batchd.safe_folder)
        return [f"{path}: {key} has a symbolic link here; make it a folder"]
    return _folder(path, key)


def _folder(path: Path, key: str) -> list[str]:
    if os.path.lexists(path):
        if not path.is_dir():
            return [f"{path}: {key} is not a folder ({_kind(path)})"]
        if not _writable(path):
            return [f"{path}: {key} is not writable by this user ({_who()})"]
        return []
    parent = _nearest_existing(path)
    cannot = f"{path}: {key} cannot be created: {parent}"
    if not parent.is_dir():
        return [f"{cannot} is not a folder ({_kind(parent)})"]
    if not _writable(parent):
        return [f"{cannot} is not writable by this user ({_who()})"]
    return []


def _unreachable(exc: OSError, path: Path, key: str) -> list[str]:
    where = exc.filename or path
    return [f"{where}: {key} cannot be looked at by this user ({_who()}): {exc.strerror}"]


def _file(path: Path) -> list[str]:
    if os.path.lexists(path) and not os.access(path, os.R_OK | os.W_OK, **_EFFECTIVE):
        return [f"{path}: not readable and writable by this user ({_who()})"]
    return []


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(path.anchor or "/")


def _writable(folder: Path) -> bool:
    """Files can be created in ``folder`` (the kernel's answer for this process's ids)."""
    return os.access(folder, os.W_OK | os.X_OK, **_EFFECTIVE)


_EFFECTIVE = {"effective_ids": True} if os.access in os.supports_effective_ids else {}


def _kind(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a dangling symbolic link"
    if path.is_file():
        return "a file"
    return "not a folder"


def _who() -> str:
    return f"uid {os.geteuid()}"
