"""``batchd run`` and ``batchd check`` on a data folder or spool batchd cannot use: one line
naming the path and the problem, exit code 3, no traceback (issue 13, item 5). Real processes;
an unwritable folder is made with its mode, and under root the process runs without the
capability that ignores modes (``setpriv``), so the kernel's own check is what refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.processes import child_env

EXIT_CONFIG = 3
SETPRIV = shutil.which("setpriv")


def batchd(command: str, config: Path, *, drop_root: bool = False) -> tuple[int, str]:
    argv = [sys.executable, "-m", "batchd", command, "--config", str(config)]
    if drop_root and os.geteuid() == 0:
        if SETPRIV is None:
            pytest.skip("root, and no setpriv to run without CAP_DAC_OVERRIDE")
        argv = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", *argv]
    env = child_env({"HOME": str(config.parent)})
    result = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=60, env=env, cwd=config.parent
    )
    return result.returncode, result.stderr


def configure(tmp_path: Path, data_dir: Path, spool: Path | None = None) -> Path:
    text = f'[daemon]\ndata_dir = "{data_dir}"\n'
    if spool is not None:
        text += f'[[routes]]\nname = "chat"\nspool = "{spool}"\nprovider = "emulator"\n'
    config = tmp_path / "batchd.toml"
    config.write_text(text)
    return config


def assert_refused(config: Path, line: str, *, drop_root: bool = False, check: bool = True) -> None:
    code, err = batchd("run", config, drop_root=drop_root)
    assert code == EXIT_CONFIG, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"batchd: start-up failed: {line}"]
    if not check:
        return
    path = line.split(": ", 1)[0]
    code, err = batchd("check", config, drop_root=drop_root)
    assert code == EXIT_CONFIG, err
    assert any(f.startswith("FAIL ") and path in f for f in err.splitlines()), err


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder\n")
    assert_refused(configure(tmp_path, data), f"{data}: daemon.data_dir is not a folder (a file)")


def test_a_data_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    parent = tmp_path / "file"
    line = f"{data}: daemon.data_dir cannot be created: {parent} is not a folder (a file)"
    assert_refused(configure(tmp_path, data), line)


def test_an_unwritable_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    data.chmod(0o500)
    line = f"{data}: daemon.data_dir is not writable by this user (uid {os.geteuid()})"
    assert_refused(configure(tmp_path, data), line, drop_root=True)


def test_an_unwritable_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "inbox").mkdir()
    spool.chmod(0o500)  # processing/, done/ and rejected/ cannot be made
    line = f"{spool}: routes[0].spool is not writable by this user (uid {os.geteuid()})"
    assert_refused(configure(tmp_path, tmp_path / "data", spool), line, drop_root=True)


def test_a_spool_folder_that_is_a_file(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "done").write_text("")
    line = f"{spool / 'done'}: routes[0].spool is not a folder (a file)"
    assert_refused(configure(tmp_path, tmp_path / "data", spool), line)


def test_usable_folders_pass_check(tmp_path: Path) -> None:
    code, err = batchd("check", configure(tmp_path, tmp_path / "data", tmp_path / "spool"))
    assert code == 0, err
    assert not (tmp_path / "data").exists()  # check creates nothing


def test_a_spool_folder_that_is_a_link(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (spool / "done").symlink_to(tmp_path / "elsewhere")
    line = f"{spool / 'done'}: routes[0].spool has a symbolic link here; make it a folder"
    assert_refused(configure(tmp_path, tmp_path / "data", spool), line)


def test_a_spool_this_user_cannot_search(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "inbox").mkdir(parents=True)
    spool.chmod(0o000)  # its folders cannot even be looked at
    line = (
        f"{spool / 'inbox'}: routes[0].spool cannot be looked at by this user"
        f" (uid {os.geteuid()}): Permission denied"
    )
    try:
        assert_refused(configure(tmp_path, tmp_path / "data", spool), line, drop_root=True)
    finally:
        spool.chmod(0o700)
