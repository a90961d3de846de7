"""Watchdog interval from the environment, heartbeat staleness and stall transitions."""

from __future__ import annotations

import os

import pytest

from batchd.systemd import Heartbeats, watchdog_interval_s, watchdog_transition


class FakeMonotonic:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------- watchdog_interval_s
@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "100000"}, 0.05),
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
    ],
)
def test_interval_is_half_of_watchdog_usec(environ: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval_s(environ, pid=4242) == interval


def test_watchdog_pid_must_be_ours() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}
    assert watchdog_interval_s(env, pid=4242) == 15.0
    assert watchdog_interval_s(env, pid=4243) is None
    assert watchdog_interval_s({**env, "WATCHDOG_PID": "x"}, pid=4242) is None


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(env) == 1.0
    assert watchdog_interval_s({**env, "WATCHDOG_PID": str(os.getpid() + 1)}) is None


def test_interval_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    assert watchdog_interval_s() == 2.0


# ---------------------------------------------------------------- Heartbeats
def test_a_registered_loop_that_never_beats_turns_stale() -> None:
    clock = FakeMonotonic()
    beats = Heartbeats(clock)
    beats.register("intake")
    assert beats.stale(clock(), max_age_s=30) == []
    clock.advance(30)
    assert beats.stale(clock(), max_age_s=30) == []  # exactly max_age is still fresh
    clock.advance(0.1)
    assert beats.stale(clock(), max_age_s=30) == ["intake"]


def test_a_beat_makes_a_loop_fresh_again() -> None:
    clock = FakeMonotonic()
    beats = Heartbeats(clock)
    for name in ("tracker", "intake", "collector"):
        beats.register(name)
    clock.advance(31)
    assert beats.stale(clock(), 30) == ["collector", "intake", "tracker"]
    beats.beat("intake")
    assert beats.stale(clock(), 30) == ["collector", "tracker"]


def test_register_does_not_reset_a_loop_that_already_beat() -> None:
    clock = FakeMonotonic()
    beats = Heartbeats(clock)
    beats.register("notifier")
    clock.advance(20)
    beats.register("notifier")
    clock.advance(11)
    assert beats.stale(clock(), 30) == ["notifier"]


def test_beat_registers_an_unknown_loop_and_forget_removes_one() -> None:
    clock = FakeMonotonic()
    beats = Heartbeats(clock)
    beats.beat("submitter")
    beats.register("intake")
    assert beats.names == ["intake", "submitter"]
    beats.forget("intake")
    clock.advance(60)
    assert beats.stale(clock(), 30) == ["submitter"]


def test_no_loops_means_nothing_is_stale() -> None:
    assert Heartbeats().stale(1e12, 30) == []


# ---------------------------------------------------------------- transitions
@pytest.mark.parametrize(
    ("before", "now", "event"),
    [
        ([], [], None),
        ([], ["tracker"], "watchdog.stalled"),
        (["tracker"], ["tracker"], None),
        (["tracker"], ["intake", "tracker"], "watchdog.stalled"),
        (["intake", "tracker"], ["tracker"], "watchdog.stalled"),
        (["tracker"], [], "watchdog.recovered"),
    ],
)
def test_watchdog_transition(before: list[str], now: list[str], event: str | None) -> None:
    assert watchdog_transition(before, now) == event
