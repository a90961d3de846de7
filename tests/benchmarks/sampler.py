"""A background thread that samples, every ``interval_s``: the emulator's request counters, and
the daemon's CPU time and RSS. Sweep cycles are found afterwards from the list-call counter."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from tests.benchmarks.procs import Daemon, Emulator

LIST = "GET /v1/batch/jobs"
GET = "GET /v1/batch/jobs/{job_id}"
SWEEP_GAP_S = 1.0  # list calls further apart than this start a new sweep


@dataclass(frozen=True)
class Sample:
    t: float  # wall clock
    lists: int
    gets: int
    cpu_s: float | None  # the daemon's user + system time
    rss: int | None


@dataclass
class Sampler:
    emulator: Emulator
    daemon: Callable[[], Daemon | None]
    interval_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.samples.append(self._sample())
            self._stop.wait(self.interval_s)

    def _sample(self) -> Sample:
        stats = self.emulator.stats()
        cpu = rss = None
        daemon = self.daemon()
        if daemon is not None and daemon.proc is not None:
            with contextlib.suppress(psutil.Error):
                cpu, rss = daemon.cpu_s(), daemon.rss_bytes()
        return Sample(time.time(), stats.get(LIST, 0), stats.get(GET, 0), cpu, rss)

    # ------------------------------------------------------------------ views
    def at(self, t: float) -> Sample:
        """The last sample taken at or before ``t`` (the first one if none)."""
        best = self.samples[0]
        for sample in self.samples:
            if sample.t > t:
                break
            best = sample
        return best

    def sweep_starts(self, since: float = 0.0) -> list[float]:
        """Times at which a sweep began: the list counter moved after a quiet gap."""
        starts: list[float] = []
        last_move: float | None = None
        previous = self.samples[0] if self.samples else None
        for sample in self.samples[1:]:
            assert previous is not None
            if sample.lists > previous.lists:
                quiet_before = last_move is None or sample.t - last_move > SWEEP_GAP_S
                if quiet_before and previous.t >= since:
                    starts.append(previous.t)
                last_move = sample.t
            previous = sample
        return starts

    def max_rss(self, start: float, end: float) -> int | None:
        values = [s.rss for s in self.samples if start <= s.t <= end and s.rss is not None]
        return max(values) if values else None


def wait_for_sweeps(sampler: Sampler, count: int, *, since: float, timeout_s: float) -> list[float]:
    """Block until ``count`` sweeps have started after ``since``; returns their start times."""
    deadline = time.monotonic() + timeout_s
    while len(starts := sampler.sweep_starts(since)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(starts)} of {count} sweeps seen")
        time.sleep(0.2)
    return starts[:count]
