"""``batchd check``: fast (one short attempt per provider), spool folders, webhook event
patterns, whether a daemon runs on the data folder, and ``--json``."""

from __future__ import annotations

import fcntl
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run

EXIT_UNREACHABLE, EXIT_CONFIG = 1, 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write(tmp_path: Path, routes: str = "", extra: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    path = tmp_path / "batchd.toml"
    path.write_text(f'[daemon]\ndata_dir = "{data}"\n{extra}\n{routes}')
    return path


def route(spool: Path, provider: str = "emulator") -> str:
    return f'[[routes]]\nname = "chat"\nspool = "{spool}"\nprovider = "{provider}"\n'


def checks(capsys: Any, config: Path) -> tuple[int, dict[str, Any]]:
    code = run(["check", "--json", "--config", str(config)])
    doc = json.loads(capsys.readouterr().out)
    return code, {c["check"]: c for c in doc["checks"]} | {"ok": doc["ok"]}


def test_a_dead_base_url_is_reported_after_one_short_attempt(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MISTRAL_API_KEY", "k-1234567890")
    dead = f"http://127.0.0.1:{free_port()}"
    provider = f'[providers.mistral]\nkind = "mistral"\nbase_url = "{dead}"\nread_retries = 6\n'
    config = write(tmp_path, route(tmp_path / "spool", "mistral"), provider)
    started = time.monotonic()
    code = run(["check", "--config", str(config)])
    elapsed = time.monotonic() - started
    assert code == EXIT_UNREACHABLE
    assert elapsed < 5  # six read retries with backoff took about 30 s
    assert f"FAIL provider mistral: {dead}" in capsys.readouterr().err


def test_everything_ok_as_json(tmp_path: Path, capsys: Any):
    config = write(tmp_path, route(tmp_path / "spool"))
    (tmp_path / "spool" / "inbox").mkdir(parents=True)
    code, found = checks(capsys, config)
    assert code == 0 and found["ok"] is True
    assert found["configuration"]["detail"] == str(config)
    assert found["daemon"] == {
        "check": "daemon",
        "ok": True,
        "detail": f"not running on {tmp_path / 'data'}",
    }
    assert "not created yet" in found["database"]["detail"]
    assert found["spool chat"]["ok"] is True
    assert "processing, done, rejected not created yet" in found["spool chat"]["detail"]
    assert found["provider emulator"]["ok"] is True


def test_it_says_when_a_daemon_holds_the_data_folder(tmp_path: Path, capsys: Any):
    config = write(tmp_path, route(tmp_path / "spool"))
    with (tmp_path / "data" / "batchd.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _, found = checks(capsys, config)
    assert found["daemon"]["detail"] == f"running on {tmp_path / 'data'}"


def test_spool_folders_that_cannot_be_used_fail_with_exit_3(tmp_path: Path, capsys: Any):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "inbox").write_text("not a folder")
    config = write(tmp_path, route(spool))
    code, found = checks(capsys, config)
    assert code == EXIT_CONFIG and found["ok"] is False
    detail = f"{spool / 'inbox'}: routes[0].spool is not a folder (a file)"
    assert found["spool chat"]["detail"] == detail

    config = write(tmp_path, route(blocker / "spool"))
    code, found = checks(capsys, config)
    assert code == EXIT_CONFIG
    assert "cannot be created" in found["spool chat"]["detail"]


def test_a_webhook_event_pattern_matching_nothing_fails(tmp_path: Path, capsys: Any):
    hook = (
        '[[webhooks]]\nname = "ops"\nurl = "https://hooks.example.com/x"\n'
        'events = ["submission.done", "results.redy"]\n'
    )
    config = write(tmp_path, route(tmp_path / "spool"), hook)
    assert run(["check", "--config", str(config)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "webhooks[0].events: 'submission.done' matches no event type" in err
    assert "did you mean 'results.ready'?" in err
