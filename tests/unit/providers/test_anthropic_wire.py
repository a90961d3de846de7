"""Anthropic's wire format, pure: neutral lines translated to ``params``, the status mapping,
result lines in neutral form, the create body streamed in blocks, ids mapped back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchd.errors import ProviderPermanent
from batchd.models import JobState, RequestCounts
from batchd.providers import anthropic_body as body
from batchd.providers import anthropic_wire as wire
from batchd.providers.anthropic_results import Misadopted, map_back, owned_by
from batchd.providers.base import ChunkInput
from batchd.providers.staging import indexed_id


def test_an_openai_style_body_becomes_anthropic_params() -> None:
    neutral = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
        ],
        "max_completion_tokens": 20,
        "stop": "END",
        "temperature": 0.2,
    }
    assert wire.to_params(neutral, "claude-route") == {
        "model": "claude-route",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 20,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "system": "Be brief.\n\nNo lists.",
    }


def test_native_params_pass_unchanged_and_the_line_s_model_wins() -> None:
    native = {
        "model": "claude-line",
        "max_tokens": 5,
        "system": "S",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        "top_k": 3,
    }
    assert wire.to_params(native, "claude-route") == native


def batch(status: str, counts: dict[str, int], **extra: Any) -> dict[str, Any]:
    base = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return {
        "id": "msgbatch_1",
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {**base, **counts},
        "created_at": "2026-01-02T03:04:05.500000Z",
        "ended_at": None,
        "results_url": None,
        **extra,
    }


@pytest.mark.parametrize(
    ("data", "state"),
    [
        (batch("in_progress", {"processing": 3}), JobState.RUNNING),
        (batch("canceling", {"processing": 3}), JobState.CANCELLING),
        (batch("ended", {"succeeded": 2, "errored": 1}), JobState.SUCCEEDED),
        (batch("ended", {"succeeded": 1, "expired": 2}), JobState.SUCCEEDED),
        (batch("ended", {"expired": 3}), JobState.EXPIRED),
        (
            batch("ended", {"succeeded": 1, "canceled": 2}, cancel_initiated_at="2026-01-02T04Z"),
            JobState.CANCELLED,
        ),
        (batch("archived?", {"processing": 3}), JobState.UNKNOWN),
    ],
)
def test_status_mapping(data: dict[str, Any], state: JobState) -> None:
    assert wire.parse_batch(data).state is state


def test_a_batch_in_neutral_form() -> None:
    data = batch("ended", {"succeeded": 2, "errored": 1}, results_url="http://h/r")
    data["ended_at"] = "2026-01-02T03:05:05+00:00"
    snap = wire.parse_batch(data, {"batchd_job": "j"}, "/v1/chat/completions")
    assert snap.counts == RequestCounts(total=3, completed=3, succeeded=2, failed=1)
    assert snap.created_at == pytest.approx(1767323045.5)
    assert snap.completed_at == pytest.approx(1767323105.0)
    assert snap.output_file == "msgbatch_1" and snap.metadata == {"batchd_job": "j"}
    running = wire.parse_batch(batch("in_progress", {"processing": 3}))
    assert running.counts == RequestCounts(total=3, completed=0) and running.output_file is None


def test_result_lines_in_neutral_form() -> None:
    message = {"id": "msg_1", "type": "message", "usage": {"input_tokens": 3}}
    ok = wire.parse_result_line(
        json.dumps({"custom_id": "a", "result": {"type": "succeeded", "message": message}}).encode()
    )
    assert (ok.status_code, ok.body, ok.ok) == (200, message, True)
    errored = {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: required"},
            "request_id": "req_1",
        },
    }
    bad = wire.parse_result_line(json.dumps({"custom_id": "b", "result": errored}).encode())
    assert bad.status_code == 400 and not bad.ok
    assert bad.error == {
        "type": "invalid_request_error",
        "message": "max_tokens: required",
        "request_id": "req_1",
    }
    left = wire.parse_result_line(b'{"custom_id":"c","result":{"type":"expired"}}')
    assert left.status_code is None and left.error["type"] == "expired" and not left.ok
    for raw in (b"nope", b"[]", b'{"result":{}}'):
        with pytest.raises(ProviderPermanent):
            wire.parse_result_line(raw)


def chunk(tmp_path: Path, n: int, job_id: str = "job1") -> ChunkInput:
    path = tmp_path / "chunk.jsonl"
    lines = [
        {
            "custom_id": f"user id {i}/é",
            "body": {"messages": [{"role": "user", "content": "é" * i}]},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return ChunkInput(path, job_id, "/v1/chat/completions", "claude-x")


def test_the_create_body_is_streamed_in_blocks_and_measured_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(body, "BLOCK_BYTES", 100)
    given = chunk(tmp_path, 7)
    blocks = list(body.blocks(given))
    assert len(blocks) > 2
    sent = b"".join(blocks)
    assert body.measure(given) == (7, len(sent))
    requests = json.loads(sent)["requests"]
    assert [r["custom_id"] for r in requests] == [indexed_id("job1", i) for i in range(7)]
    assert requests[3]["params"] == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "ééé"}],
    }


def test_limits_of_one_batch() -> None:
    assert body.too_large(0, 10) is not None
    assert body.too_large(100_000, 256_000_000) is None
    assert body.too_large(100_001, 10) is not None
    assert body.too_large(1, 256_000_001) is not None


def test_results_are_mapped_back_or_refused_when_another_job_s(tmp_path: Path) -> None:
    given = chunk(tmp_path, 3)
    raw = tmp_path / "raw.jsonl"
    raw.write_text(
        "".join(
            json.dumps({"custom_id": indexed_id("job1", i), "result": {"type": "expired"}}) + "\n"
            for i in (2, 0, 1)
        )
    )
    dest = tmp_path / "results.jsonl"
    assert map_back(raw, given.path, "job1", dest) == dest.stat().st_size
    ids = [json.loads(line)["custom_id"] for line in dest.read_text().splitlines()]
    assert ids == ["user id 2/é", "user id 0/é", "user id 1/é"]
    assert owned_by("job1", raw.read_bytes().splitlines()[0]) is True
    assert owned_by("job2", raw.read_bytes().splitlines()[0]) is False
    assert owned_by("job1", b"") is None
    with pytest.raises(Misadopted):
        map_back(raw, given.path, "job2", tmp_path / "other.jsonl")
    assert not (tmp_path / "other.jsonl").exists()
