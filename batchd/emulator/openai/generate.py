"""Writing a finished batch's output and error files (in a worker thread).

Lines follow reference 1.4: ``{"id":"batch_req_…","custom_id","response":{"status_code",
"request_id","body"},"error":null}``. A success goes to the output file; a body its endpoint
refuses goes to the error file with ``status_code`` 400, OpenAI's error object as the body and
``error: null``. After an expiry or a cancel, every request that never ran gets an error line
with ``response: null`` and ``error: {"code": "batch_expired" | "batch_cancelled"}``. Lines are
in arbitrary (reproducible) order: every block of 64 is permuted.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from batchd.emulator.clock import derived_uuid
from batchd.emulator.openai import checks, responses
from batchd.emulator.openai.scan import iter_requests
from batchd.emulator.scan import checkpoint

BLOCK = 64
_PERMUTATION = list(range(BLOCK))
random.Random(6464).shuffle(_PERMUTATION)
BUFFER_BYTES = 1024 * 1024
UNPROCESSED = {
    "expired": {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    },
    "cancelled": {
        "code": "batch_cancelled",
        "message": "This request could not be executed because the batch was cancelled.",
    },
}


@dataclass(frozen=True)
class Plan:
    endpoint: str
    source: Path
    done: int  # requests processed (their lines come first)
    written: int  # of those, how many get a line (fewer under a short_results fault)
    unprocessed: str | None  # "expired" / "cancelled": lines for the requests never run
    out_path: Path
    err_path: Path


@dataclass
class Written:
    lines: int = 0
    size_bytes: int = 0


@dataclass
class Outcome:
    out: Written = field(default_factory=Written)
    err: Written = field(default_factory=Written)
    input_tokens: int = 0
    output_tokens: int = 0

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class _Blocks:
    def __init__(self, sink: BinaryIO, written: Written) -> None:
        self._sink = sink
        self._written = written
        self._block: list[str] = []

    def add(self, line: dict[str, Any]) -> None:
        self._block.append(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
        if len(self._block) == BLOCK:
            self._flush([self._block[i] for i in _PERMUTATION])

    def close(self) -> None:
        self._flush(self._block[::-1])

    def _flush(self, lines: list[str]) -> None:
        if lines:
            data = "".join(lines).encode()
            self._sink.write(data)
            self._written.lines += len(lines)
            self._written.size_bytes += len(data)
        self._block = []


def _line_id(digest: bytes, index: int) -> str:
    return f"batch_req_{derived_uuid(digest).replace('-', '')[:24]}{index:x}"


def _processed(
    plan: Plan, index: int, custom_id: str, body: dict[str, Any], outcome: Outcome
) -> tuple[bool, dict[str, Any]]:
    problem = checks.check(plan.endpoint, body)
    digest = responses.digest_of(plan.endpoint, body)
    request_id = "req_" + digest.hex()
    if problem is None:
        digest, answer = responses.respond(plan.endpoint, body)
        tokens_in, tokens_out = responses.usage_tokens(plan.endpoint, answer)
        outcome.input_tokens += tokens_in
        outcome.output_tokens += tokens_out
        response = {"status_code": 200, "request_id": request_id, "body": answer}
    else:
        response = {"status_code": problem.status, "request_id": request_id, "body": problem.body}
    line = {
        "id": _line_id(digest, index),
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }
    return problem is None, line


def generate(plan: Plan, cancel: threading.Event) -> Outcome:
    """Write both files; an empty one is left empty (the caller drops it)."""
    outcome = Outcome()
    with (
        plan.out_path.open("wb", buffering=BUFFER_BYTES) as out_sink,
        plan.err_path.open("wb", buffering=BUFFER_BYTES) as err_sink,
    ):
        out, err = _Blocks(out_sink, outcome.out), _Blocks(err_sink, outcome.err)
        for index, custom_id, body in iter_requests(plan.source):
            checkpoint(index, cancel)
            if index < plan.done:
                if index < plan.written:
                    ok, line = _processed(plan, index, custom_id, body, outcome)
                    (out if ok else err).add(line)
            elif plan.unprocessed is not None:
                digest = responses.digest_of(plan.endpoint, body)
                err.add(
                    {
                        "id": _line_id(digest, index),
                        "custom_id": custom_id,
                        "response": None,
                        "error": UNPROCESSED[plan.unprocessed],
                    }
                )
            else:
                break
        out.close()
        err.close()
    return outcome
