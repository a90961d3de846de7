"""A reload re-applies intake and loop settings to the running daemon (in-process ``Daemon``).

The duplicates policy is the observable one: under the default (reject) the same content dropped
twice is rejected; after a reload with ``duplicates = "allow"`` it is accepted. So is
``share_with_group``: the modes of results and rejection reasons written after the reload.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.models import SubmissionState
from tests.integration.daemon.conftest import Recorder, kinds

CONFIG = """\
[daemon]
data_dir = "{data}"
share_with_group = {share}
[intake]
min_age_s = 0.1
duplicates = "{duplicates}"
max_lines = {max_lines}
[track]
poll_initial_s = 0.2
[providers.emulator]
kind = "emulator"
emulator_speed = 3600
[[routes]]
name = "chat"
spool = "{spool}"
provider = "emulator"
"""

CONTENT = "".join(
    json.dumps({"custom_id": f"c{i}", "body": {"messages": [{"role": "user", "content": "hi"}]}})
    + "\n"
    for i in range(3)
)


def write_config(
    path: Path, tmp: Path, *, duplicates: str, max_lines: int, share: bool = False
) -> None:
    path.write_text(
        CONFIG.format(
            data=tmp / "data",
            spool=tmp / "spool",
            duplicates=duplicates,
            max_lines=max_lines,
            share="true" if share else "false",
        )
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def final_state(daemon: Daemon, name: str) -> SubmissionState:
    assert daemon.runtime is not None
    for _ in range(300):
        subs = [s for s in await daemon.runtime.store.list_submissions() if s.name == name]
        if subs and subs[0].state in {SubmissionState.DONE, SubmissionState.REJECTED}:
            return subs[0].state
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never finished")


def drop(tmp: Path, name: str) -> None:
    staging = tmp / "spool" / "inbox" / f".{name}.part"
    staging.write_text(CONTENT)
    staging.rename(staging.with_name(name))


async def test_reload_applies_the_new_intake_policy(tmp_path: Path) -> None:
    config = tmp_path / "batchd.toml"
    write_config(config, tmp_path, duplicates="reject", max_lines=2)
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        drop(tmp_path, "first.jsonl")  # 3 lines, max_lines = 2: rejected
        assert await final_state(daemon, "first.jsonl") is SubmissionState.REJECTED
        assert mode(tmp_path / "spool" / "rejected" / "first.reason.txt") == 0o600

        write_config(config, tmp_path, duplicates="allow", max_lines=100, share=True)
        assert await daemon.reload()
        drop(tmp_path, "second.jsonl")
        assert await final_state(daemon, "second.jsonl") is SubmissionState.DONE
        done = tmp_path / "spool" / "done" / "second"
        assert (mode(done), mode(done / "results.jsonl"), mode(done / "summary.json")) == (
            0o750,
            0o640,
            0o640,
        )
        drop(tmp_path, "third.jsonl")  # same content again: allowed now
        assert await final_state(daemon, "third.jsonl") is SubmissionState.DONE

        write_config(config, tmp_path, duplicates="reject", max_lines=100, share=True)
        assert await daemon.reload()
        drop(tmp_path, "fourth.jsonl")
        assert await final_state(daemon, "fourth.jsonl") is SubmissionState.REJECTED
        assert mode(tmp_path / "spool" / "rejected" / "fourth.reason.txt") == 0o640
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0


async def test_any_failure_during_a_reload_refuses_it_and_systemd_hears_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "batchd.toml"
    write_config(config, tmp_path, duplicates="reject", max_lines=100)
    sd = Recorder()
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False, systemd=sd)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        before = daemon.settings

        def broken(*_args: object) -> None:
            raise RuntimeError("something unexpected")

        monkeypatch.setattr("batchd.daemon.apply_settings", broken)
        write_config(config, tmp_path, duplicates="allow", max_lines=100)
        assert not await daemon.reload()
        assert daemon.settings is before
        assert kinds(sd)[-2:] == ["RELOADING=1", "READY=1"]
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0


async def test_a_reload_asked_for_while_starting_runs_once_ready(tmp_path: Path) -> None:
    config = tmp_path / "batchd.toml"
    write_config(config, tmp_path, duplicates="reject", max_lines=100)
    sd = Recorder()
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False, systemd=sd)
    daemon._on_reload_signal()  # SIGHUP before the daemon is ready: deferred, not lost
    write_config(config, tmp_path, duplicates="allow", max_lines=100)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        for _ in range(100):
            if daemon.settings.intake.duplicates == "allow":
                break
            await asyncio.sleep(0.05)
        assert daemon.settings.intake.duplicates == "allow"
        assert kinds(sd)[:3] == ["READY=1", "RELOADING=1", "READY=1"]
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0
