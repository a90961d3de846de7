"""Running a loop: ``run_once()`` passes separated by the loop's own wait, forever.

A failed pass is logged and the loop goes on (after a short pause, so a persistent failure does
not spin); an exception that escapes this runner kills the loop, and the daemon stops the process
with exit code 1 so that systemd restarts it.

Heartbeats gate the systemd watchdog. A loop beats after every pass, and also every
``BEAT_EVERY_S`` while a pass is running, but only until the pass has run for the loop's
``max_pass_s``: a legitimately long pass (a 1 GB download) keeps the watchdog fed, a pass stuck
for longer than anything it could legitimately do lets the heartbeat go stale and systemd
restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)

FAILED_PASS_PAUSE_S = 1.0
BEAT_EVERY_S = 5.0
DEFAULT_MAX_PASS_S = 600.0
DEFAULT_STALL_S = 300.0

# Set around each pass: what ``report_progress`` calls (a pass's tasks inherit it).
_progress: ContextVar[Callable[[], None] | None] = ContextVar("batchd_progress", default=None)


def report_progress() -> None:
    """Tell the running pass's heartbeat that work moved (a job, a page, a file done)."""
    mark = _progress.get()
    if mark is not None:
        mark()


class Loop(Protocol):
    name: str

    async def run_once(self) -> int: ...

    async def wait(self) -> None:
        """Sleep until the next pass is due (or something woke the loop)."""
        ...


async def run_loop(
    loop: Loop,
    stop: asyncio.Event,
    beat: Callable[[str], None],
    *,
    max_wait_s: float = 20.0,
    max_pass_s: float = DEFAULT_MAX_PASS_S,
    stall_s: float = DEFAULT_STALL_S,
) -> None:
    """``run(stop)`` for any loop: passes until ``stop`` is set. An idle loop still runs a pass
    every ``max_wait_s`` so that its heartbeat stays fresh for the watchdog."""
    while not stop.is_set():
        try:
            await _pass_with_heartbeat(loop, beat, max_pass_s, stall_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("loop.pass_failed", loop=loop.name)
            await _sleep_or_stop(stop, FAILED_PASS_PAUSE_S)
        beat(loop.name)
        if stop.is_set():
            break
        waiter = asyncio.ensure_future(loop.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=max_wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()


async def _pass_with_heartbeat(
    loop: Loop, beat: Callable[[str], None], max_pass_s: float, stall_s: float
) -> None:
    """Run one pass, beating while it runs: for at most ``max_pass_s`` in all, and only while
    it reports progress (``report_progress``) at least every ``stall_s``. A pass that hangs
    stops beating after ``stall_s``, and the watchdog then restarts batchd."""
    clock = asyncio.get_running_loop().time
    started = last_progress = clock()

    def mark() -> None:
        nonlocal last_progress
        last_progress = clock()

    token = _progress.set(mark)
    try:
        task = asyncio.ensure_future(loop.run_once())  # copies the context: sees ``mark``
    finally:
        _progress.reset(token)
    warned = False
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=BEAT_EVERY_S)
            if done:
                task.result()
                return
            now = clock()
            if now - started <= max_pass_s and now - last_progress <= stall_s:
                beat(loop.name)
            elif not warned:
                warned = True
                log.error(
                    "loop.pass_too_long",
                    loop=loop.name,
                    running_s=round(now - started, 1),
                    since_progress_s=round(now - last_progress, 1),
                )
    finally:
        if not task.done():
            task.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class Waker:
    """An ``asyncio.Event`` with a timed wait: how loops wake each other without a direct call.

    Every loop's ``wait()`` ends in ``Waker.wait``: woken by ``set()`` or after the timeout,
    whichever comes first, and the wake is consumed either way."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """Sleep at most ``timeout_s``; True when ``set()`` ended the sleep."""
        woken = True
        try:
            await asyncio.wait_for(self._event.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            woken = False
        self._event.clear()
        return woken


T = TypeVar("T")


async def gather_bounded(
    items: Iterable[T], step: Callable[[T], Awaitable[None]], *, limit: int
) -> None:
    """Run ``step`` on every item, at most ``limit`` at a time (one pass of a loop).

    Every step runs to its end before this returns, even when one fails: a pass that ended
    while another step was still in flight (a create, say) would let the next pass start the
    same work again. Then the first failure is raised."""
    gate = asyncio.Semaphore(max(1, limit))

    async def one(item: T) -> None:
        async with gate:
            try:
                await step(item)
            finally:
                report_progress()

    outcomes = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
