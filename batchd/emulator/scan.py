"""Reading a job's input: JSONL lines ``{"custom_id", "body"}`` from one or more files.

``scan`` is the validation step a job goes through while QUEUED: it counts the requests,
finds the lines that make the whole job fail (not JSON, not an object, no ``body`` object, a
``custom_id`` that is not a string) and the requests that will fail on their own (a body the
endpoint refuses). It runs in a worker thread and keeps only the failing indices in memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchd.emulator import requests

Source = tuple[str, Path]  # (label for error messages, path)


class Cancelled(Exception):
    """The emulator is stopping; background work gives up."""


YIELD_EVERY = 256  # lines between checkpoints
YIELD_S = 0.0


def checkpoint(index: int, cancel: threading.Event) -> None:
    """Called per line by worker threads: give up when stopping, and every few hundred lines
    let the event loop take the GIL (otherwise each of its syscalls waits out the 5 ms switch
    interval and API latency spikes while a big file is scanned or written)."""
    if index % YIELD_EVERY == 0:
        if cancel.is_set():
            raise Cancelled
        time.sleep(YIELD_S)


@dataclass
class ScanResult:
    n_requests: int = 0
    failed: list[int] = field(default_factory=list)  # sorted indices of failing requests
    errors: list[dict[str, Any]] = field(default_factory=list)  # BatchError objects


@dataclass
class _Problems:
    first: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, message: str) -> None:
        self.first.setdefault(kind, message)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def as_errors(self) -> list[dict[str, Any]]:
        return [{"message": self.first[k], "count": self.counts[k]} for k in self.first]


def _raw_lines(sources: Sequence[Source]) -> Iterator[tuple[str, int, bytes]]:
    for label, path in sources:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield label, number, raw


def _line_problem(raw: bytes) -> tuple[str, str] | None:
    """``(kind, reason)`` when the line breaks the file format, else ``None``."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return "invalid_json", f"invalid JSON ({exc})"
    except RecursionError:
        return "invalid_json", "invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return "not_object", "each line must be a JSON object"
    if not isinstance(obj.get("body"), dict):
        return "missing_body", "each line must have a `body` object"
    custom_id = obj.get("custom_id")
    if custom_id is not None and not isinstance(custom_id, str):
        return "bad_custom_id", "`custom_id` must be a string"
    return None


def scan(
    sources: Sequence[Source],
    endpoint: str,
    model: str | None,
    *,
    max_requests: int,
    cancel: threading.Event,
) -> ScanResult:
    result = ScanResult()
    problems = _Problems()
    for count, (label, number, raw) in enumerate(_raw_lines(sources)):
        checkpoint(count, cancel)
        problem = _line_problem(raw)
        if problem is not None:
            problems.add(problem[0], f"Invalid input file {label}: line {number}: {problem[1]}")
            continue
        body = json.loads(raw)["body"]
        if requests.check(endpoint, model, body) is not None:
            result.failed.append(result.n_requests)
        result.n_requests += 1
    if not problems.first and result.n_requests == 0:
        problems.add("empty", "The input contains no requests")
    if result.n_requests > max_requests:
        problems.add("too_many", f"A batch can contain at most {max_requests} requests")
    result.errors = problems.as_errors()
    return result


def iter_requests(sources: Sequence[Source]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(index, custom_id, body)`` for every request of a validated input, in order. A
    missing ``custom_id`` becomes the request's index."""
    for index, (_label, _number, raw) in enumerate(_raw_lines(sources)):
        obj = json.loads(raw)
        custom_id = obj.get("custom_id")
        yield index, custom_id if isinstance(custom_id, str) else str(index), obj["body"]
