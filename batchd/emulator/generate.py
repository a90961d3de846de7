"""Writing a job's output and error files (runs in a worker thread).

Lines follow reference section 1.4: ``{"id":"<index>-<uuid>","custom_id","response":
{"status_code","body"},"error"}``. Successful requests go to the output file with
``error: null``; refused ones go to the error file with the endpoint's 4xx body and ``error``
as ``{"message"}`` or, when configured, a bare string. Lines are written in arbitrary (but
reproducible) order: every block of 64 requests is permuted. Only the first ``done`` requests
are written (partial results after a timeout or a cancel).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from batchd.emulator import requests
from batchd.emulator.clock import derived_uuid
from batchd.emulator.outputs import RAW_ENDPOINTS, Responder, render, request_digest
from batchd.emulator.requests import effective_model
from batchd.emulator.scan import Source, checkpoint, iter_requests

BLOCK = 64
_PERMUTATION = list(range(BLOCK))
random.Random(64).shuffle(_PERMUTATION)
WRITE_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class GenerationPlan:
    endpoint: str
    model: str | None
    sources: Sequence[Source]
    done: int
    out_path: Path
    err_path: Path
    error_field: Literal["object", "string"]


@dataclass
class FileSummary:
    lines: int = 0
    size_bytes: int = 0


class _BlockWriter:
    def __init__(self, sink: BinaryIO, summary: FileSummary) -> None:
        self._sink = sink
        self._summary = summary
        self._block: list[str] = []

    def add(self, line: str) -> None:
        self._block.append(line)
        if len(self._block) == BLOCK:
            self._flush([self._block[i] for i in _PERMUTATION])

    def close(self) -> None:
        self._flush(self._block[::-1])

    def _flush(self, lines: list[str]) -> None:
        if lines:
            data = "".join(lines).encode()
            self._sink.write(data)
            self._summary.lines += len(lines)
            self._summary.size_bytes += len(data)
        self._block = []


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def result_line(
    plan: GenerationPlan, responder: Responder, index: int, custom_id: str, body: dict[str, Any]
) -> tuple[bool, str]:
    """``(ok, line)`` for one request."""
    problem = requests.check(plan.endpoint, plan.model, body)
    if problem is None:
        digest, response = responder.respond(plan.endpoint, plan.model, body)
        envelope = {"status_code": 200, "body": response}
        error: object = None
    else:
        model = effective_model(body, plan.model)
        digest = request_digest(plan.endpoint, model, body)
        envelope = {"status_code": problem.status, "body": problem.body}
        error = problem.message if plan.error_field == "string" else {"message": problem.message}
    line_id = f"{index}-{derived_uuid(digest)}"
    line = {"id": line_id, "custom_id": custom_id, "response": envelope, "error": error}
    if plan.endpoint in RAW_ENDPOINTS:
        return problem is None, render(line) + "\n"
    return problem is None, _dumps(line)


def generate(
    plan: GenerationPlan, responder: Responder, cancel: threading.Event
) -> tuple[FileSummary, FileSummary]:
    """Write both files; returns their summaries (a file with 0 lines is left empty)."""
    out_summary, err_summary = FileSummary(), FileSummary()
    with (
        plan.out_path.open("wb", buffering=WRITE_BUFFER_BYTES) as out_sink,
        plan.err_path.open("wb", buffering=WRITE_BUFFER_BYTES) as err_sink,
    ):
        out = _BlockWriter(out_sink, out_summary)
        err = _BlockWriter(err_sink, err_summary)
        for index, custom_id, body in iter_requests(plan.sources):
            if index >= plan.done:
                break
            checkpoint(index, cancel)
            ok, line = result_line(plan, responder, index, custom_id, body)
            (out if ok else err).add(line)
        out.close()
        err.close()
    return out_summary, err_summary
