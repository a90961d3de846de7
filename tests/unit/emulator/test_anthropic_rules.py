"""The Anthropic emulator's pure rules: a batch's planned end, its counts, and which params
the Messages API would refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchd.emulator.anthropic.batches import (
    EXPIRY_S,
    BatchRecord,
    End,
    EndKind,
    canceled_end,
    counts,
    plan,
    processed,
)
from batchd.emulator.anthropic.requests import param_problem
from batchd.emulator.anthropic.results import result_line
from batchd.emulator.config import ProcessingModel

MODEL = ProcessingModel(queue_s=10, request_s=10, parallelism=1, min_run_s=0, jitter=0)


def batch(n: int, invalid: list[int], end: End, **kw: Any) -> BatchRecord:
    return BatchRecord(
        id="b", seq=1, owner="o", created_at=0.0, n_requests=n, invalid=invalid,
        requests_path=Path("/nonexistent"), start_at=10.0, run_s=10.0 * n, end=end, **kw,
    )  # fmt: skip


def test_plan_ends_when_every_request_is_processed_or_at_expiry() -> None:
    assert plan(3, 0.0, MODEL, 1.0, 1.0) == (10.0, 30.0, End(EndKind.DONE, 40.0, 3))
    _, _, end = plan(10_000, 0.0, MODEL, 1.0, 1.0)
    assert end == End(EndKind.EXPIRED, EXPIRY_S, processed(10_000, 10.0, 100_000.0, EXPIRY_S))


def test_counts_show_processing_until_ready_then_split_by_kind() -> None:
    running = batch(4, [1], End(EndKind.CANCELED, 30.0, 2))
    assert counts(running)["processing"] == 4 and counts(running)["succeeded"] == 0
    ended = batch(4, [1], End(EndKind.CANCELED, 30.0, 2), ready=True)
    assert counts(ended) == {
        "processing": 0, "succeeded": 1, "errored": 1, "canceled": 2, "expired": 0
    }  # fmt: skip


def test_a_cancel_keeps_what_was_processed_and_comes_once() -> None:
    running = batch(4, [], End(EndKind.DONE, 50.0, 4))
    assert canceled_end(running, 25.0, 5.0) == End(EndKind.CANCELED, 30.0, 1)
    running.cancel_at = 25.0
    assert canceled_end(running, 26.0, 5.0) is None
    assert canceled_end(batch(4, [], End(EndKind.DONE, 50.0, 4)), 50.0, 5.0) is None


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "0"),
        ({"model": "m", "max_tokens": True, "messages": [{"role": "user", "content": "x"}]}, "max"),
        ({"model": "m", "max_tokens": 1, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ],
)
def test_refused_params(params: dict[str, Any], problem: str) -> None:
    found = param_problem(params)
    assert found is not None and problem in found


def test_result_lines_by_kind() -> None:
    good = {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "a b c"}]}
    line = result_line({"custom_id": "x", "params": good}, True, EndKind.DONE)
    assert line["result"]["message"]["content"][0]["text"] == "a b"
    assert line["result"]["message"]["stop_reason"] == "max_tokens"
    refused = result_line({"custom_id": "y", "params": {}}, True, EndKind.DONE)
    assert refused["result"]["error"]["error"]["type"] == "invalid_request_error"
    left = result_line({"custom_id": "z", "params": good}, False, EndKind.EXPIRED)
    assert left == {"custom_id": "z", "result": {"type": "expired"}}
