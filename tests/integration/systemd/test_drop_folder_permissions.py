"""The shared inbox works as systemd/README.md says, with real kernel permission checks.

The spool is built with the modes of ``systemd/batchd.tmpfiles`` in a scratch folder, owned by
made-up ids (no user accounts are created): ``batchd`` owns it, ``alice`` and ``bob`` are in its
group, ``eve`` is not. Each step runs in a child process with those ids, so this needs root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchd.spool import GROUP_READABLE, make_folder, write_atomic
from tests.integration.systemd.unit_file import TMPFILES

GROUP = 47_000  # batchd's group
BATCHD, ALICE, BOB, EVE = 47_001, 47_002, 47_003, 47_004
# uid -> (primary group, supplementary groups). Alice and Bob have their own primary groups,
# as real users do, and are members of batchd's group.
IDS = {
    BATCHD: (GROUP, [GROUP]),
    ALICE: (47_102, [47_102, GROUP]),
    BOB: (47_103, [47_103, GROUP]),
    EVE: (47_104, [47_104]),
}

# The made-up users cannot reach this venv's interpreter (it may live under /root): run a
# system one, with only the standard library (-I -S), which is all the steps need.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root to act as several users (setuid in a child process)"
    ),
    pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system python3 for the made-up users"),
]


def spool_modes() -> dict[str, int]:
    """``{"": 0o2750, "inbox": 0o3770, ...}`` for /srv/batchd from the shipped tmpfiles.d file."""
    modes: dict[str, int] = {}
    for line in TMPFILES.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "d" and fields[1].startswith("/srv/batchd"):
            modes[fields[1].removeprefix("/srv/batchd").lstrip("/")] = int(fields[2], 8)
    return modes


@dataclass
class Spool:
    root: Path

    def run(self, uid: int, code: str) -> subprocess.CompletedProcess[str]:
        primary, groups = IDS[uid]
        script = f"import os\nos.chdir({str(self.root)!r})\n{code}"
        return subprocess.run(
            [str(SYSTEM_PYTHON), "-I", "-S", "-c", script],
            user=uid,
            group=primary,
            extra_groups=groups,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def ok(self, uid: int, code: str) -> str:
        result = self.run(uid, code)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def refused(self, uid: int, code: str) -> None:
        result = self.run(uid, code)
        assert result.returncode != 0
        assert "PermissionError" in result.stderr, result.stderr


@pytest.fixture
def spool() -> Iterator[Spool]:
    scratch = Path(tempfile.mkdtemp(prefix="batchd-perm-"))
    scratch.chmod(0o755)  # the made-up users must reach it (pytest's tmp_path is root-only)
    root = scratch / "spool"
    try:
        for relative, mode in sorted(spool_modes().items()):
            path = root / relative
            path.mkdir()
            os.chown(path, BATCHD, GROUP)
            path.chmod(mode)
        yield Spool(root)
    finally:
        shutil.rmtree(scratch)


DROP = (
    "fd = os.open('inbox/.a.jsonl.part', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)\n"
    "os.write(fd, b'{}\\n'); os.close(fd)\n"
    "os.rename('inbox/.a.jsonl.part', 'inbox/a.jsonl')\n"
)


def test_the_shipped_modes_are_the_documented_ones() -> None:
    assert spool_modes() == {
        "": 0o2750,
        "inbox": 0o3770,
        "processing": 0o700,
        "done": 0o2750,
        "rejected": 0o2750,
    }


def test_a_group_member_drops_and_batchd_claims(spool: Spool) -> None:
    spool.ok(ALICE, DROP)
    st = (spool.root / "inbox" / "a.jsonl").stat()
    assert (st.st_uid, st.st_gid) == (ALICE, GROUP)  # setgid: the group is batchd's
    assert stat.S_IMODE(st.st_mode) == 0o640
    claimed = spool.ok(
        BATCHD,
        "os.rename('inbox/a.jsonl', 'processing/a.jsonl')\n"
        "print(open('processing/a.jsonl').read(), end='')",
    )
    assert claimed == "{}\n"  # read through the group, renamed as the inbox's owner


def test_sticky_inbox_protects_one_users_file_from_another(spool: Spool) -> None:
    spool.ok(ALICE, DROP)
    spool.refused(BOB, "os.rename('inbox/a.jsonl', 'inbox/b.jsonl')")
    spool.refused(BOB, "os.unlink('inbox/a.jsonl')")
    spool.ok(BOB, DROP.replace(".a.", ".b.").replace("/a.", "/b."))


def test_outsiders_cannot_reach_the_spool(spool: Spool) -> None:
    spool.refused(EVE, "os.listdir('inbox')")
    spool.refused(EVE, "open('inbox/x.jsonl', 'w')")


def test_group_members_see_outcomes_but_not_work_in_progress(spool: Spool) -> None:
    spool.ok(BATCHD, "os.mkdir('done/a', 0o700)\nopen('done/a/results.jsonl', 'w').close()")
    assert spool.ok(ALICE, "print(os.listdir('done'))").strip() == "['a']"
    spool.refused(ALICE, "os.listdir('done/a')")
    spool.refused(ALICE, "os.listdir('processing')")


def test_with_share_with_group_members_read_results_and_outsiders_do_not(spool: Spool) -> None:
    results = spool.root / "done" / "a"
    old = os.umask(0o077)  # the unit's UMask: the modes must not depend on it
    try:
        make_folder(results, GROUP_READABLE.folder)
        write_atomic(results / "results.jsonl", b"{}\n", mode=GROUP_READABLE.file)
    finally:
        os.umask(old)
    for path in (results, results / "results.jsonl"):
        os.chown(path, BATCHD, GROUP)  # as the daemon, running as batchd, would own them
    read = "print(os.listdir('done/a'), open('done/a/results.jsonl').read(), end='')"
    assert spool.ok(ALICE, read) == "['results.jsonl'] {}\n"
    spool.refused(ALICE, "open('done/a/results.jsonl', 'a')")
    spool.refused(EVE, read)
