"""Every folder and file ``batchd run`` creates has its mode whatever the umask it was started
with (issue 13, item 7): the real process under umask 000 and 022, private or shared with the
spool's group, one file processed and one rejected."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batchd.models import SubmissionState
from batchd.spool import GROUP_READABLE, PRIVATE
from tests.acceptance.harness import Harness, RouteSpec, chat_lines


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask000", "umask022"])
@pytest.mark.parametrize("shared", [False, True], ids=["private", "shared"])
async def test_modes_do_not_depend_on_the_umask(harness: Harness, umask: int, shared: bool) -> None:
    modes = GROUP_READABLE if shared else PRIVATE
    harness.start_emulator()
    harness.configure([RouteSpec("chat")], daemon={"share_with_group": shared})
    old = os.umask(umask)  # inherited by the daemon process
    try:
        await harness.start()
    finally:
        os.umask(old)
    harness.drop("chat", "a.jsonl", chat_lines(2))
    harness.drop("chat", "bad.jsonl", "not json\n")
    await harness.wait_done("a.jsonl")
    await harness.wait_submission("bad.jsonl", [SubmissionState.REJECTED])
    await harness.stop()

    data = harness.data_dir
    database = data / "batchd.sqlite3"
    private = {
        data: 0o700,
        data / "work": 0o700,
        data / "batchd.lock": 0o600,
        data / "instance-id": 0o600,
        database: 0o600,
        **{p: 0o600 for p in database.parent.glob("batchd.sqlite3-*")},
    }
    assert {p: mode(p) for p in private} == private
    spool = harness.spool("chat")
    folders = {
        harness.spool_root: 0o755,  # a parent batchd made
        spool.root: 0o750,
        spool.inbox: 0o3770,
        spool.processing: 0o700,
        spool.done: modes.folder,
        spool.rejected: modes.folder,
        spool.done / "a": modes.folder,
    }
    assert {p: mode(p) for p in folders} == folders
    outputs = [spool.done / "a" / n for n in ("results.jsonl", "errors.jsonl", "summary.json")]
    files = [*outputs, spool.done / "a" / "input.jsonl"]
    files += [spool.rejected / "bad.jsonl", spool.rejected / "bad.reason.txt"]
    assert {p: mode(p) for p in files} == {p: modes.file for p in files}
