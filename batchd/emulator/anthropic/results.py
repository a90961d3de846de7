"""Writing a batch's results file (runs in a worker thread).

One line per request, ``{"custom_id", "result"}`` (reference section 2.4): the requests
processed are ``succeeded`` with a ``Message`` or ``errored`` with the nested error
(``result.error.type == "error"``, ``result.error.error.type == "invalid_request_error"``); the
rest are ``canceled`` or ``expired``. Lines come in arbitrary but reproducible order (every
block of 64 is permuted). A message's text is a pure function of its params: an echo of the
prompt then filler words, one token per word; it stops at ``max_tokens``
(``stop_reason: "max_tokens"``) or at its natural length of 8..40 words (``end_turn``).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchd.emulator.anthropic.batches import EndKind
from batchd.emulator.anthropic.requests import param_problem, prompt_text
from batchd.emulator.anthropic.wire import derived_id
from batchd.emulator.outputs import MAX_COMPLETION_TOKENS, compose
from batchd.emulator.scan import Cancelled

WRITE_BUFFER_BYTES = 1024 * 1024
NATURAL_MIN, NATURAL_SPAN = 8, 33
BLOCK = 64
_PERMUTATION = list(range(BLOCK))
random.Random(64).shuffle(_PERMUTATION)


@dataclass(frozen=True)
class ResultsPlan:
    requests_path: Path
    results_path: Path
    done: int
    rest: EndKind  # what the requests not processed became (canceled or expired)


def write_results(plan: ResultsPlan, stop: threading.Event) -> None:
    """Write the results file of ``plan`` (atomically: a temporary name, then renamed)."""
    temp = plan.results_path.with_suffix(".part")
    with temp.open("w", encoding="utf-8", buffering=WRITE_BUFFER_BYTES) as sink:
        block: list[str] = []
        for index, request in enumerate(_requests(plan.requests_path)):
            if index % 4096 == 0 and stop.is_set():
                raise Cancelled
            block.append(json.dumps(result_line(request, index < plan.done, plan.rest)))
            if len(block) == BLOCK:
                sink.writelines(block[i] + "\n" for i in _PERMUTATION)
                block = []
        sink.writelines(line + "\n" for line in reversed(block))
    temp.replace(plan.results_path)


def _requests(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as source:
        for line in source:
            yield json.loads(line)


def result_line(request: dict[str, Any], processed: bool, rest: EndKind) -> dict[str, Any]:
    custom_id = request["custom_id"]
    if not processed:
        kind = "canceled" if rest is EndKind.CANCELED else "expired"
        return {"custom_id": custom_id, "result": {"type": kind}}
    params = request["params"]
    problem = param_problem(params)
    if problem is not None:
        return {"custom_id": custom_id, "result": errored(problem, custom_id)}
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message(params)}}


def errored(problem: str, seed: str) -> dict[str, Any]:
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": problem},
            "request_id": derived_id("req_", f"errored:{seed}:{problem}"),
        },
    }


def message(params: dict[str, Any]) -> dict[str, Any]:
    """The ``Message`` the Messages API would answer (a pure function of ``params``)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    digest = hashlib.blake2b(canonical.encode(), digest_size=16).digest()
    prompt = prompt_text(params)
    natural = NATURAL_MIN + digest[4] % NATURAL_SPAN
    limit = min(int(params["max_tokens"]), MAX_COMPLETION_TOKENS)
    tokens = min(natural, limit)
    return {
        "id": derived_id("msg_", canonical),
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": [{"type": "text", "text": compose(prompt, tokens, digest)}],
        "stop_reason": "end_turn" if natural <= limit else "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(prompt.split())),
            "output_tokens": tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "batch",
        },
    }
