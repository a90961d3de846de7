"""Issue 7, with the real process and a fake ``$NOTIFY_SOCKET`` (a filesystem path and an
abstract ``@`` socket): the sd_notify sequence for start, reload (good and bad configuration)
and stop; watchdog pings when ``$WATCHDOG_USEC`` is set; ``STATUS=`` with the live figures.

(The stalled loop that stops the pings is tested in-process: tests/integration/daemon.)
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from typing import Literal

import pytest

from batchd.models import SubmissionState
from tests.acceptance.harness import Harness, RouteSpec, chat_lines
from tests.notify_listener import Message, is_ready, is_reloading, is_stopping, is_watchdog

STATUS_RE = re.compile(
    r"open jobs (?P<open_jobs>\d+), pending downloads (?P<pending_downloads>\d+), "
    r"undelivered events (?P<undelivered_events>\d+), last provider error: (?P<error>.+)"
)
WATCHDOG_USEC = 400_000  # a ping every 0.2 s
ACCEPTED = [SubmissionState.ACTIVE, SubmissionState.DONE]
# Jobs that stay open: 1000 emulated seconds a request at real speed.
NEVER_ENDING = {"request_s": 1000, "parallelism": 1}


def figures(message: Message) -> dict[str, str] | None:
    match = STATUS_RE.fullmatch(message.get("STATUS", ""))
    return match.groupdict() if match else None


def status_with_open_jobs(count: int) -> Callable[[Message], bool]:
    def check(message: Message) -> bool:
        found = figures(message)
        return found is not None and found["open_jobs"] == str(count)

    return check


@pytest.mark.parametrize("kind", ["path", "abstract"])
async def test_notify_sequence_for_start_reloads_and_stop(
    harness: Harness, kind: Literal["path", "abstract"]
) -> None:
    listener = harness.listen(kind)
    harness.start_emulator(speed=1, processing=NEVER_ENDING)
    harness.configure([RouteSpec("chat")])
    daemon = await harness.start(env={"WATCHDOG_USEC": str(WATCHDOG_USEC)})

    # READY=1 only once the store is migrated and the inboxes scanned.
    ready_at = listener.find(is_ready)
    assert ready_at is not None
    assert listener.states()[0] == "READY=1"
    assert harness.logged("daemon.started")
    assert harness.spool("chat").inbox.is_dir()
    await listener.wait_count(is_watchdog, 3)

    # STATUS= carries the live figures: no open job at first, one once a file is accepted.
    await listener.wait_for(status_with_open_jobs(0))
    harness.drop("chat", "one.jsonl", chat_lines(2, "a"))
    await harness.wait_submission("one.jsonl", ACCEPTED)
    status = figures(await listener.wait_for(status_with_open_jobs(1), timeout_s=15))
    assert status is not None
    assert (status["pending_downloads"], status["error"]) == ("0", "none")

    # A good reload: RELOADING=1, then READY=1; the new route is watched.
    mark = len(listener.collect())
    harness.configure([RouteSpec("chat"), RouteSpec("extra")])
    daemon.send(signal.SIGHUP)
    reloading = await listener.wait_for(is_reloading, start=mark)
    assert "MONOTONIC_USEC" in reloading
    ready = await listener.wait_for(is_ready, start=mark)
    assert ready["STATUS"] == "reloaded"
    await harness.wait_until(lambda: harness.logged("daemon.reloaded"), "daemon.reloaded")
    harness.drop("extra", "two.jsonl", chat_lines(2, "b"))
    await harness.wait_submission("two.jsonl", ACCEPTED)

    # A broken configuration: RELOADING=1, READY=1 saying it was refused; the old one stays.
    mark = len(listener.collect())
    harness.config_path.write_text('[daemon]\nlog_level = "loud"\n[[routes]\n')
    daemon.send(signal.SIGHUP)
    await listener.wait_for(is_reloading, start=mark)
    refused = await listener.wait_for(is_ready, start=mark)
    assert refused["STATUS"].startswith("reload refused:")
    await harness.wait_until(lambda: harness.logged("daemon.reload_failed"), "reload_failed")
    harness.drop("chat", "three.jsonl", chat_lines(2, "c"))
    harness.drop("extra", "four.jsonl", chat_lines(2, "d"))
    await harness.wait_submission("three.jsonl", ACCEPTED)
    await harness.wait_submission("four.jsonl", ACCEPTED)

    # SIGTERM: STOPPING=1 and exit 0 within 10 s.
    took_s = await harness.stop()
    assert took_s < 10.0
    assert listener.find(is_stopping) is not None
    assert listener.states() == [
        "READY=1",
        "RELOADING=1",
        "READY=1",
        "RELOADING=1",
        "READY=1",
        "STOPPING=1",
    ]
    pings = [i for i, m in enumerate(listener.messages) if is_watchdog(m)]
    assert len(pings) >= 3 and pings[0] > ready_at  # pings start once ready


async def test_no_watchdog_pings_without_watchdog_usec(harness: Harness) -> None:
    harness.start_emulator()
    harness.configure([RouteSpec("chat")])
    await harness.start()
    harness.drop("chat", "one.jsonl", chat_lines(1))
    await harness.wait_done("one.jsonl")
    await harness.stop()
    assert harness.listener.count("WATCHDOG") == 0
    assert harness.listener.states() == ["READY=1", "STOPPING=1"]


async def test_sigint_stops_cleanly_and_a_second_signal_forces_the_exit(harness: Harness) -> None:
    # Uploads hang for 30 s at the provider: a stop must wait for (or give up on) one.
    harness.start_emulator(faults=["latency:1,delay=30,route=POST /v1/files"])
    harness.configure([RouteSpec("chat")])
    await harness.start()
    assert await harness.stop(sig=signal.SIGINT) < 10.0  # Ctrl-C: a clean stop, exit 0

    run = await harness.start()
    harness.drop("chat", "slow.jsonl", chat_lines(2))
    await harness.wait_submission("slow.jsonl", [SubmissionState.ACTIVE])
    await asyncio.sleep(1.0)  # the upload is in flight
    began = time.monotonic()
    run.send(signal.SIGTERM)  # drains: would wait up to shutdown_grace_s for the upload
    await asyncio.sleep(0.3)
    run.send(signal.SIGTERM)  # an impatient operator: exit now
    assert await harness.wait_exit(5.0) == 1
    assert time.monotonic() - began < 3.0
    assert harness.logged("daemon.forced_exit", signal="SIGTERM")
