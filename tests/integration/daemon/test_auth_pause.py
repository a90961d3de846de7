"""A daemon whose provider refuses the key runs no busy loop (issue 13, item 6): the submitter
sleeps until the pause ends, and the notifier (woken by the other loops' passes) with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from batchd.config_load import load_settings
from batchd.daemon import Daemon
from batchd.errors import AuthError
from batchd.notifier import Notifier
from batchd.providers.mistral import MistralProvider
from batchd.submitter import Submitter
from batchd.tracker import Tracker

WATCH_S = 3.0


async def test_no_loop_spins_while_the_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "batchd.toml"
    config.write_text(f'[daemon]\ndata_dir = "{data}"\n[intake]\nmin_age_s = 0\n')
    inbox = data / "spool" / "inbox"
    inbox.mkdir(parents=True)
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    line = {"custom_id": "a", "body": body}
    (inbox / "one.jsonl").write_text(json.dumps(line) + "\n")

    async def refused(self: MistralProvider, *args: Any, **kwargs: Any) -> Any:
        raise AuthError("401 Unauthorized: the key was revoked", status=401)

    monkeypatch.setattr(MistralProvider, "upload_file", refused)
    passes: Counter[str] = Counter()
    for cls in (Submitter, Tracker, Notifier):
        original = cls.run_once

        async def counted(self: Any, _original: Any = original) -> int:
            passes[self.name] += 1
            return int(await _original(self))

        monkeypatch.setattr(cls, "run_once", counted)
    daemon = Daemon(load_settings(config), config_path=config, install_signals=False)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), timeout=30)
        assert daemon.runtime is not None
        deadline = time.monotonic() + 20
        while not daemon.runtime.gate.paused_until:
            assert time.monotonic() < deadline, "the provider was never paused"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the pause's own event goes out
        before = passes.copy()
        await asyncio.sleep(WATCH_S)
        during = passes - before
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=30) == 0
    # Before: ~20 submitter passes a second, and the notifier as many (woken by each).
    assert during["submitter"] <= 1, during
    assert during["tracker"] <= 2, during  # its idle beat is every 5 s
    assert during["notifier"] <= 4, during
