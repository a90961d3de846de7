"""``batchd submit``'s copy into the inbox, and the no-replace rename under it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batchd import spool
from batchd.spool import rename_noreplace
from batchd.submit_file import COPY_MODE, copy_into


def test_rename_noreplace_moves_and_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b"
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]


def test_rename_noreplace_without_renameat2_checks_then_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "_libc", object)  # a libc without renameat2
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a"


def test_copy_into_writes_a_whole_group_readable_copy_and_no_temp_file(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"custom_id": "a", "body": {}}\n' * 1000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = copy_into(source, inbox, "job.jsonl")
    assert target.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == COPY_MODE & ~_umask()
    assert os.listdir(inbox) == ["job.jsonl"]


def test_copy_into_refuses_a_name_taken_meanwhile_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("new\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    real = spool.rename_noreplace

    def someone_drops_first(src: Path, dst: Path) -> None:
        dst.write_text("theirs\n")  # dropped between our check and our rename
        real(src, dst)

    monkeypatch.setattr("batchd.submit_file.rename_noreplace", someone_drops_first)
    with pytest.raises(FileExistsError):
        copy_into(source, inbox, "job.jsonl")
    assert (inbox / "job.jsonl").read_text() == "theirs\n"
    assert os.listdir(inbox) == ["job.jsonl"]  # our temp copy is gone


def test_two_copies_never_share_a_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    temps: list[str] = []
    real = spool.rename_noreplace

    def record(src: Path, dst: Path) -> None:
        temps.append(src.name)
        real(src, dst)

    monkeypatch.setattr("batchd.submit_file.rename_noreplace", record)
    for i, name in enumerate(["a.jsonl", "b.jsonl"]):
        source = tmp_path / f"{i}.jsonl"
        source.write_text(f"{i}\n")
        copy_into(source, inbox, name)
    assert len(set(temps)) == 2
    assert all(t.startswith(".") and t.endswith(".part") for t in temps)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_device_is_not_taken_as_a_batch_file(tmp_path: Path) -> None:
    (tmp_path / "null.jsonl").symlink_to("/dev/null")  # the open must not follow it either
    with pytest.raises(spool.UnsafeFile, match="symbolic link"):
        spool.open_dropped(tmp_path, "null.jsonl", max_bytes=1000)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(spool.UnsafeFile, match="device"):
            spool._check_fd(fd, 1000)
    finally:
        os.close(fd)
