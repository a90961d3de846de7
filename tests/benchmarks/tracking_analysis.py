"""Turning a tracking run's raw records into calls per job-hour and detection latencies.

Definitions (the same for both sides):

- A window spans whole sweep cycles of the daemon (sweep start to sweep start), at least
  ``window_s`` long, after the tuned poller has started.
- Open job-hours in a window: for each job of the fleet, the part of the window before the
  provider completed it (``completed_at`` converted to wall time), summed, in hours.
- Tracking calls: status calls only (``GET /v1/batch/jobs`` list pages and
  ``GET /v1/batch/jobs/{id}``), counted by each side's emulator (twins: same settings and seed)
  and sampled every 100 ms. Result downloads are not tracking calls.
- Calls per job-hour = tracking calls in the window / open job-hours in the window.
- Detection latency of a job that completed in the window: the time the client recorded its
  terminal state (the daemon's ``terminal_at``; the poller's response time) minus its completion
  time. The emulator reports ``completed_at`` in whole emulated seconds, so half a tick
  (0.5 / speed s) is added to centre it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.benchmarks.procs import ClockMap
from tests.benchmarks.sampler import Sampler
from tests.benchmarks.stats import percentile, ratio, summary

HOUR = 3600.0


@dataclass(frozen=True)
class Detections:
    """Per provider job id: (detected wall time, completion wall time)."""

    by_job: dict[str, tuple[float, float]]

    @classmethod
    def build(cls, raw: Mapping[str, tuple[float, float | None]], clock: ClockMap) -> Detections:
        half_tick = 0.5 / clock.speed
        out = {
            job: (detected, clock.wall(completed) + half_tick)
            for job, (detected, completed) in raw.items()
            if completed is not None
        }
        return cls(out)

    def completions(self) -> dict[str, float]:
        return {job: done for job, (_, done) in self.by_job.items()}

    def latencies(self, start: float, end: float) -> list[float]:
        return [d - c for d, c in self.by_job.values() if start <= c < end]


def job_hours(
    fleet: Sequence[str], completed: Mapping[str, float], start: float, end: float
) -> float:
    total = 0.0
    for job in fleet:
        until = min(end, completed.get(job, end))
        total += max(0.0, until - start)
    return total / HOUR


def windows(
    starts: Sequence[float], *, after: float, before: float, min_s: float, count: int
) -> list[tuple[float, float]]:
    """Up to ``count`` consecutive windows of whole cycles, each at least ``min_s`` long."""
    usable = [s for s in starts if after <= s <= before]
    out: list[tuple[float, float]] = []
    i = 0
    while len(out) < count and i < len(usable):
        j = i + 1
        while j < len(usable) and usable[j] - usable[i] < min_s:
            j += 1
        if j >= len(usable):
            break
        out.append((usable[i], usable[j]))
        i = j
    return out


@dataclass(frozen=True)
class Side:
    """One client's fleet and what it recorded."""

    fleet: Sequence[str]
    detections: Detections


def window_metrics(
    window: tuple[float, float],
    daemon_counts: Sampler,
    poller_counts: Sampler,
    daemon: Side,
    poller: Side,
) -> dict[str, Any]:
    start, end = window
    first, last = daemon_counts.at(start), daemon_counts.at(end)
    lists = last.lists - first.lists
    daemon_gets = last.gets - first.gets
    poller_gets = poller_counts.at(end).gets - poller_counts.at(start).gets
    daemon_done = len(daemon.detections.latencies(start, end))
    daemon_hours = job_hours(daemon.fleet, daemon.detections.completions(), start, end)
    poller_hours = job_hours(poller.fleet, poller.detections.completions(), start, end)
    return {
        "start": start,
        "seconds": end - start,
        "daemon": {
            "list_calls": lists,
            "get_calls": daemon_gets,
            "completions": daemon_done,
            "job_hours": daemon_hours,
            "calls_per_job_hour": ratio(lists + daemon_gets, daemon_hours),
            "polling_calls_per_job_hour": ratio(lists, daemon_hours),
            "gets_per_completion": ratio(daemon_gets, daemon_done),
            "latency_p50_s": percentile(daemon.detections.latencies(start, end), 50),
            "latency_p95_s": percentile(daemon.detections.latencies(start, end), 95),
        },
        "poller": {
            "get_calls": poller_gets,
            "completions": len(poller.detections.latencies(start, end)),
            "job_hours": poller_hours,
            "calls_per_job_hour": ratio(poller_gets, poller_hours),
            "latency_p50_s": percentile(poller.detections.latencies(start, end), 50),
            "latency_p95_s": percentile(poller.detections.latencies(start, end), 95),
        },
    }


def combine(per_window: list[dict[str, Any]], daemon: Side, poller: Side) -> dict[str, Any]:
    """Medians over windows, pooled latency percentiles, and the equal-p95 ratio.

    The poller's interval is tuned towards the daemon's p95 while it runs; what is left of
    the difference is removed by scaling: a fixed-interval poller's p95 and its calls per
    job-hour are proportional to T and 1/T, so at the daemon's p95 it would make
    ``calls x p95_poller / p95_daemon``."""
    spans = [(w["start"], w["start"] + w["seconds"]) for w in per_window]
    d_lat = [x for s, e in spans for x in daemon.detections.latencies(s, e)]
    p_lat = [x for s, e in spans for x in poller.detections.latencies(s, e)]
    d_p95, p_p95 = percentile(d_lat, 95), percentile(p_lat, 95)

    def med(side: str, key: str) -> dict[str, Any]:
        return summary([w[side][key] for w in per_window])

    gets = sum(w["daemon"]["get_calls"] for w in per_window)
    done = sum(w["daemon"]["completions"] for w in per_window)
    d_rate = med("daemon", "calls_per_job_hour")["median"]
    p_rate = med("poller", "calls_per_job_hour")["median"]
    p_equal = None if p_rate is None or d_p95 is None or p_p95 is None else p_rate * p_p95 / d_p95
    return {
        "windows": len(per_window),
        "daemon": {
            "calls_per_job_hour": med("daemon", "calls_per_job_hour"),
            "polling_calls_per_job_hour": med("daemon", "polling_calls_per_job_hour"),
            "gets_per_completion": ratio(gets, done),  # pooled: a get may land in the next window
            "latency_p50_s": percentile(d_lat, 50),
            "latency_p95_s": d_p95,
            "latency_p95_s_per_window": med("daemon", "latency_p95_s"),
            "completions": len(d_lat),
        },
        "poller": {
            "calls_per_job_hour": med("poller", "calls_per_job_hour"),
            "calls_per_job_hour_at_equal_p95": p_equal,
            "latency_p50_s": percentile(p_lat, 50),
            "latency_p95_s": p_p95,
            "latency_p95_s_per_window": med("poller", "latency_p95_s"),
            "completions": len(p_lat),
        },
        "calls_ratio_at_equal_p95": ratio(p_equal, d_rate),
        "calls_ratio_raw": ratio(p_rate, d_rate),
        "polling_only_ratio_at_equal_p95": ratio(
            p_equal, med("daemon", "polling_calls_per_job_hour")["median"]
        ),
    }
