"""``SystemdNotifier`` against a fake notify socket: what systemd would receive."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from batchd.store.base import StoreStats
from batchd.systemd import SystemdNotifier, format_status, notify
from tests.notify_listener import NotifyListener, is_ready, is_stopping


async def test_ready_with_status_is_one_datagram(notify_listener: NotifyListener) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled is True
    assert notifier.ready(status="started") is True
    message = await notify_listener.wait_for(is_ready)
    assert message == {"READY": "1", "STATUS": "started"}
    assert notify_listener.raw == [b"READY=1\nSTATUS=started"]


async def test_lifecycle_sequence_start_reload_refused_reload_stop(
    notify_listener: NotifyListener,
) -> None:
    """The order the daemon uses: start, a good reload, a refused reload, stop."""
    sd = SystemdNotifier()
    sd.extend_timeout(120)  # a long migration during start-up
    sd.ready(status="started")
    sd.status(format_status(StoreStats(open_jobs=2), last_error=None))
    sd.reloading()
    sd.ready(status="reloaded")
    sd.reloading()
    sd.ready(status="reload refused: routes.0.inbox: missing")
    sd.stopping(status="stopping")
    await notify_listener.wait_for(is_stopping)
    assert notify_listener.states() == [
        "READY=1",
        "RELOADING=1",
        "READY=1",
        "RELOADING=1",
        "READY=1",
        "STOPPING=1",
    ]
    assert notify_listener.values("EXTEND_TIMEOUT_USEC") == ["120000000"]
    assert notify_listener.values("STATUS") == [
        "started",
        "open jobs 2, pending downloads 0, undelivered events 0, last provider error: none",
        "reloaded",
        "reload refused: routes.0.inbox: missing",
        "stopping",
    ]


async def test_reloading_carries_the_monotonic_time(notify_listener: NotifyListener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sd = SystemdNotifier()
    sd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = await notify_listener.wait_for(lambda m: "RELOADING" in m)
    assert message.keys() == {"RELOADING", "MONOTONIC_USEC"}
    assert before <= int(message["MONOTONIC_USEC"]) <= after


async def test_watchdog_errno_and_bare_status(notify_listener: NotifyListener) -> None:
    sd = SystemdNotifier()
    sd.watchdog()
    sd.errno(5)
    sd.status("line one\nline two")
    await notify_listener.wait_count(lambda m: True, 3)
    assert notify_listener.messages == [
        {"WATCHDOG": "1"},
        {"ERRNO": "5"},
        {"STATUS": "line one line two"},
    ]


async def test_utf8_status_arrives_intact(notify_listener: NotifyListener) -> None:
    text = "3 jobs — déjà vu, 準備完了 ✓ 🙂"
    sd = SystemdNotifier()
    assert sd.status(text) is True
    await notify_listener.wait_for(lambda m: "STATUS" in m)
    assert notify_listener.raw == [("STATUS=" + text).encode("utf-8")]
    assert notify_listener.values("STATUS") == [text]


async def test_module_level_notify(notify_listener: NotifyListener) -> None:
    assert notify("READY=1", "STATUS=one-off") is True
    assert await notify_listener.wait_for(is_ready) == {"READY": "1", "STATUS": "one-off"}


async def test_socket_is_read_once_at_construction(
    notify_listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd = SystemdNotifier()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sd.ready() is True
    await notify_listener.wait_for(is_ready)


async def test_a_vanished_listener_never_raises(notify_listener: NotifyListener) -> None:
    sd = SystemdNotifier()
    assert sd.watchdog() is True
    notify_listener.close()
    with capture_logs() as logs:
        assert sd.watchdog() is False
        assert sd.stopping() is False
    assert [(e["event"], e["log_level"], e["keys"]) for e in logs] == [
        ("systemd.notify_failed", "debug", ["WATCHDOG"]),
        ("systemd.notify_failed", "debug", ["STOPPING"]),
    ]


async def test_environment_mapping_can_be_passed_explicitly() -> None:
    with NotifyListener.abstract() as listener:
        sd = SystemdNotifier(listener.env)
        assert sd.ready() is True
        assert await listener.wait_for(is_ready) == {"READY": "1"}


async def test_status_never_blocks_on_a_full_queue_but_ready_waits(
    notify_listener: NotifyListener,
) -> None:
    """Nobody reads the socket: once its queue is full, a STATUS is dropped at once, while the
    messages systemd must see wait (up to the send timeout) for room."""
    sd = SystemdNotifier()
    sent = 0
    while sd.status(f"filling {sent}") and sent < 10_000:
        sent += 1
    assert 0 < sent < 10_000  # the queue filled up (net.unix.max_dgram_qlen)
    began = time.monotonic()
    assert sd.status("one more") is False
    assert time.monotonic() - began < 0.1
    began = time.monotonic()
    assert sd.watchdog() is False  # still full: waited the timeout, then gave up
    assert time.monotonic() - began >= 0.5
