"""The health-gated watchdog against a fake notify socket.

Staleness runs on a fake monotonic clock shared by ``Heartbeats`` and ``watchdog_loop``, so a
stall happens exactly when the test says; only the ping interval is real (20 ms). Assertions are
on counts and order, never on timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.systemd import Heartbeats, SystemdNotifier, watchdog_loop
from tests.notify_listener import NotifyListener, is_watchdog

INTERVAL_S = 0.02
MAX_AGE_S = 30.0
LOOPS = ("collector", "intake", "notifier", "submitter", "tracker")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Running:
    listener: NotifyListener
    beats: Heartbeats
    clock: FakeMonotonic
    stop: asyncio.Event
    task: asyncio.Task[None]
    logs: list[MutableMapping[str, Any]]

    def beat_all(self, *, except_: tuple[str, ...] = ()) -> None:
        for name in LOOPS:
            if name not in except_:
                self.beats.beat(name)

    async def wait_log(self, event: str, count: int = 1) -> None:
        for _ in range(1000):
            if sum(1 for e in self.logs if e["event"] == event) >= count:
                return
            await asyncio.sleep(0.005)
        raise TimeoutError(f"{event} not logged: {self.logs!r}")

    def pings(self) -> int:
        return sum(1 for m in self.listener.collect() if is_watchdog(m))


@pytest.fixture
async def running(notify_listener: NotifyListener) -> AsyncIterator[Running]:
    clock = FakeMonotonic()
    beats = Heartbeats(clock)
    for name in LOOPS:
        beats.register(name)
    stop = asyncio.Event()
    sd = SystemdNotifier()
    with capture_logs() as logs:
        task = asyncio.create_task(
            watchdog_loop(
                sd, beats, interval_s=INTERVAL_S, max_age_s=MAX_AGE_S, stop=stop, clock=clock
            )
        )
        yield Running(notify_listener, beats, clock, stop, task, logs)
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_pings_while_every_heartbeat_is_fresh(running: Running) -> None:
    for _ in range(3):
        running.clock.advance(20)
        running.beat_all()
        await running.listener.wait_count(is_watchdog, running.pings() + 2)
    assert running.listener.messages == [{"WATCHDOG": "1"}] * len(running.listener.messages)
    assert [e for e in running.logs if e["event"].startswith("watchdog.")] == []


async def test_a_stalled_loop_stops_the_pings_until_it_beats_again(running: Running) -> None:
    await running.listener.wait_count(is_watchdog, 3)
    running.clock.advance(MAX_AGE_S + 1)
    running.beat_all(except_=("tracker",))
    await running.wait_log("watchdog.stalled")
    stalled_at = running.pings()
    # Ten more intervals: every one of them finds the tracker stale and sends nothing.
    await asyncio.sleep(INTERVAL_S * 10)
    assert running.pings() == stalled_at

    running.beats.beat("tracker")
    await running.listener.wait_count(is_watchdog, stalled_at + 3)
    await running.wait_log("watchdog.recovered")
    events = [e for e in running.logs if e["event"].startswith("watchdog.")]
    assert events == [
        {
            "event": "watchdog.stalled",
            "log_level": "error",
            "loops": ["tracker"],
            "max_age_s": 30.0,
        },
        {"event": "watchdog.recovered", "log_level": "info"},
    ]


async def test_a_loop_that_never_beats_stalls_the_watchdog(running: Running) -> None:
    running.beats.register("webhooks")  # registered now, never beats
    await running.listener.wait_count(is_watchdog, 2)
    running.clock.advance(MAX_AGE_S + 1)
    running.beat_all()
    await running.wait_log("watchdog.stalled")
    stalled = [e for e in running.logs if e["event"] == "watchdog.stalled"]
    assert stalled[0]["loops"] == ["webhooks"]


async def test_a_second_loop_stalling_is_logged_again(running: Running) -> None:
    running.clock.advance(MAX_AGE_S + 1)
    running.beat_all(except_=("tracker",))
    await running.wait_log("watchdog.stalled")
    running.clock.advance(MAX_AGE_S + 1)
    running.beat_all(except_=("tracker", "collector"))
    await running.wait_log("watchdog.stalled", count=2)
    stalled = [e["loops"] for e in running.logs if e["event"] == "watchdog.stalled"]
    assert stalled == [["tracker"], ["collector", "tracker"]]


async def test_stop_ends_the_loop_promptly(notify_listener: NotifyListener) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        watchdog_loop(
            SystemdNotifier(), Heartbeats(), interval_s=3600, max_age_s=MAX_AGE_S, stop=stop
        )
    )
    await notify_listener.wait_for(is_watchdog)  # the first ping is immediate
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert notify_listener.count("WATCHDOG") == 1
