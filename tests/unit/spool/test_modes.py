"""Every folder and file batchd creates has an explicit mode whatever the umask, and nothing is
written through a symbolic link (issue 13, item 7). Each test runs under umask 000 and 022."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from batchd.safe_folder import Folder, UnsafeFolder, make_folders, sticky_if_shared
from batchd.spool import GROUP_READABLE, PRIVATE, Modes, SpoolPaths
from batchd.store.sqlite import SqliteJobStore
from batchd.wiring import data_dir_lock


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_make_folders_gives_exact_modes(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert make_folders(target, 0o700)
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b"), mode(target)) == (0o755, 0o755, 0o700)
    (tmp_path / "a").chmod(0o711)
    assert not make_folders(target, 0o750)  # existing folders are left as they are
    assert (mode(tmp_path / "a"), mode(target)) == (0o711, 0o700)


@pytest.mark.parametrize("modes", [PRIVATE, GROUP_READABLE], ids=["private", "shared"])
def test_the_spool_is_created_with_explicit_modes(tmp_path: Path, umask: int, modes: Modes) -> None:
    paths = SpoolPaths(tmp_path / "srv" / "spool")
    paths.ensure(modes)
    assert mode(paths.root) == 0o750  # not group/world-writable: no link can replace done/
    assert mode(paths.inbox) == 0o3770  # as systemd/batchd.tmpfiles makes it
    assert mode(paths.processing) == 0o700
    assert mode(paths.done) == mode(paths.rejected) == modes.folder  # 0700, or 0750 shared


def test_a_shared_spool_root_gets_the_sticky_bit(tmp_path: Path, umask: int) -> None:
    paths = SpoolPaths(tmp_path / "spool")
    paths.root.mkdir()
    paths.root.chmod(0o777)
    paths.ensure()
    assert mode(paths.root) == 0o1777
    assert not sticky_if_shared(paths.root)  # already sticky
    private = tmp_path / "private"
    private.mkdir(mode=0o750)
    private.chmod(0o750)
    assert not sticky_if_shared(private) and mode(private) == 0o750


def test_ensure_refuses_a_linked_spool_folder(tmp_path: Path, umask: int) -> None:
    paths = SpoolPaths(tmp_path / "spool")
    paths.ensure()
    (tmp_path / "elsewhere").mkdir()
    paths.done.rmdir()
    paths.done.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFolder, match="done is a symbolic link"):
        paths.ensure()


@pytest.mark.parametrize("modes", [PRIVATE, GROUP_READABLE], ids=["private", "shared"])
def test_files_and_folders_written_below_have_exact_modes(
    tmp_path: Path, umask: int, modes: Modes
) -> None:
    run = tmp_path / "spool" / "done" / "name"
    (tmp_path / "spool").mkdir()
    with Folder.open(run, below=2, mode=modes.folder) as folder:
        folder.write("results.jsonl", b"{}\n", mode=modes.file)
        dropped = tmp_path / "spool" / "input"
        dropped.write_bytes(b"{}\n")
        dropped.chmod(0o666)
        folder.move_in(dropped, "input.jsonl", mode=modes.file)
    assert mode(run.parent) == mode(run) == modes.folder
    assert mode(run / "results.jsonl") == mode(run / "input.jsonl") == modes.file


def test_a_link_below_the_base_is_refused(tmp_path: Path, umask: int) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (spool / "done").symlink_to(elsewhere)
    with pytest.raises(UnsafeFolder) as info:
        Folder.open(spool / "done" / "name", below=2, mode=0o700)
    assert str(info.value) == (
        f"{spool / 'done'} is a symbolic link; batchd does not write through it (make it a folder)"
    )
    assert list(elsewhere.iterdir()) == []
    (spool / "file").write_text("")
    with pytest.raises(UnsafeFolder, match="is not a folder"):
        Folder.open(spool / "file" / "name", below=2, mode=0o700)


def test_a_link_in_place_of_a_file_is_replaced_not_followed(tmp_path: Path, umask: int) -> None:
    folder_path = tmp_path / "spool" / "done"
    folder_path.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (folder_path / "results.jsonl").symlink_to(victim)
    with Folder.open(folder_path, below=1) as folder:
        folder.write("results.jsonl", b"new\n", mode=0o600)
    assert victim.read_text() == "keep\n"
    assert not (folder_path / "results.jsonl").is_symlink()
    assert (folder_path / "results.jsonl").read_text() == "new\n"


def test_the_lock_and_the_data_folder_are_private(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "state" / "data"
    with data_dir_lock(data):
        assert (mode(data), mode(data / "batchd.lock")) == (0o700, 0o600)
    assert mode(data.parent) == 0o700  # a missing parent too (~/.local/state, XDG)
    (data / "batchd.lock").chmod(0o666)  # left by an older version under umask 000
    with data_dir_lock(data):
        assert mode(data / "batchd.lock") == 0o600


async def test_the_database_and_its_wal_files_are_0600(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "batchd.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    try:
        await store.stats()
        files = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]
        assert [mode(f) for f in files] == [0o600, 0o600, 0o600]
    finally:
        await store.close()
    path.chmod(0o644)  # made by an older version
    store = SqliteJobStore(path)
    await store.open()
    await store.close()
    assert mode(path) == 0o600


def test_a_shared_root_batchd_cannot_make_sticky_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A world-writable spool root owned by another user: batchd cannot add the sticky bit, so
    anyone may replace done/ or rejected/ there. It says so instead of going on silently."""
    root = tmp_path / "spool"
    root.mkdir()
    root.chmod(0o777)

    chmod = os.chmod

    def not_the_owner(path: Path, mode: int) -> None:
        if Path(path) == root:
            raise PermissionError(1, "Operation not permitted", str(path))
        chmod(path, mode)

    monkeypatch.setattr("batchd.safe_folder.os.chmod", not_the_owner)
    with capture_logs() as logs:
        SpoolPaths(root).ensure()
    (warning,) = [e for e in logs if e["event"] == "spool.root_unprotected"]
    assert warning["log_level"] == "warning" and warning["spool"] == str(root)
    assert warning["fix"] == f"chmod +t {root}"
