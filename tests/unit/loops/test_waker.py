"""``loops.Waker``: the one wake-or-timeout wait that every loop's ``wait()`` ends in."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from batchd.loops import Waker

ROOT = Path(__file__).resolve().parents[3]
LOOP_MODULES = ("intake", "submitter", "tracker", "collector", "retention", "notifier")


async def test_a_set_wakes_the_wait_early_and_says_so() -> None:
    waker = Waker()
    clock = asyncio.get_running_loop().time
    started = clock()
    asyncio.get_running_loop().call_later(0.02, waker.set)
    assert await waker.wait(5.0) is True
    assert clock() - started < 2.0


async def test_without_a_set_the_wait_times_out() -> None:
    assert await Waker().wait(0.01) is False
    assert await Waker().wait(-1.0) is False  # a due time already past: no sleep at all


async def test_a_wake_is_consumed_once() -> None:
    waker = Waker()
    waker.set()  # set before the wait: the next wait returns at once
    assert await waker.wait(5.0) is True
    assert await waker.wait(0.01) is False


def test_no_loop_hand_writes_its_own_wake_or_timeout_wait() -> None:
    for name in LOOP_MODULES:
        text = (ROOT / "batchd" / f"{name}.py").read_text(encoding="utf-8")
        assert "self._wake = Waker()" in text, name
        assert not re.search(r"wait_for\(\s*self\._wake", text), name
