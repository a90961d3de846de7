"""Reading inputs and writing result files (pure functions over files in tmp_path)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from batchd.emulator.generate import BLOCK, GenerationPlan, generate
from batchd.emulator.outputs import STABLE_CREATED, Responder
from batchd.emulator.scan import Cancelled, iter_requests, scan

NO_CANCEL = threading.Event()
RESPONDER = Responder(default_max_tokens=4, embedding_dim=8, created=STABLE_CREATED)


def write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def good(i: int) -> dict[str, Any]:
    return {"custom_id": f"c{i}", "body": {"messages": [{"role": "user", "content": f"q {i}"}]}}


def test_scan_counts_requests_and_remembers_failures(tmp_path: Path) -> None:
    lines = [good(0), {"custom_id": "bad", "body": {}}, "", good(2), {"body": {"messages": 1}}]
    result = scan(
        [("f", write(tmp_path / "in.jsonl", lines))],
        "/v1/chat/completions",
        "m",
        max_requests=10,
        cancel=NO_CANCEL,
    )
    assert (result.n_requests, result.failed, result.errors) == (4, [1, 3], [])


def test_scan_reports_format_errors_grouped(tmp_path: Path) -> None:
    lines = ["nope", good(1), "{bad", [1], {"custom_id": 3, "body": {}}]
    result = scan(
        [("f1", write(tmp_path / "in.jsonl", lines))],
        "/v1/chat/completions",
        "m",
        max_requests=10,
        cancel=NO_CANCEL,
    )
    assert [e["count"] for e in result.errors] == [2, 1, 1]
    assert result.errors[0]["message"].startswith("Invalid input file f1: line 1: invalid JSON")


def test_scan_limits_and_cancel(tmp_path: Path) -> None:
    source = [("f", write(tmp_path / "in.jsonl", [good(i) for i in range(5)]))]
    too_many = scan(source, "/v1/chat/completions", "m", max_requests=4, cancel=NO_CANCEL)
    assert too_many.errors == [{"message": "A batch can contain at most 4 requests", "count": 1}]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        scan(source, "/v1/chat/completions", "m", max_requests=9, cancel=stop)


def test_iter_requests_spans_files_and_fills_missing_custom_ids(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [good(0), {"body": {"x": 1}}])
    b = write(tmp_path / "b.jsonl", [{"custom_id": None, "body": {}}])
    got = [(i, cid) for i, cid, _ in iter_requests([("a", a), ("b", b)])]
    assert got == [(0, "c0"), (1, "1"), (2, "2")]


def _plan(tmp_path: Path, lines: list[Any], done: int, **changes: Any) -> GenerationPlan:
    base: dict[str, Any] = {
        "endpoint": "/v1/chat/completions",
        "model": "m",
        "sources": [("f", write(tmp_path / "in.jsonl", lines))],
        "done": done,
        "out_path": tmp_path / "out",
        "err_path": tmp_path / "err",
        "error_field": "object",
    }
    return GenerationPlan(**{**base, **changes})


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_generate_writes_the_first_done_requests_in_permuted_blocks(tmp_path: Path) -> None:
    n = BLOCK * 2 + 10
    lines = [good(i) for i in range(n)]
    lines[5] = {"custom_id": "bad", "body": {"messages": []}}
    plan = _plan(tmp_path, lines, done=n - 3)
    out, err = generate(plan, RESPONDER, NO_CANCEL)
    assert (out.lines, err.lines) == (n - 4, 1)
    assert out.size_bytes == plan.out_path.stat().st_size
    ids = [x["custom_id"] for x in _read(plan.out_path)]
    assert set(ids) == {f"c{i}" for i in range(n - 3)} - {"c5"}
    assert ids[:BLOCK] != sorted(ids[:BLOCK], key=lambda c: int(c[1:]))  # not input order
    (error_line,) = _read(plan.err_path)
    assert error_line["custom_id"] == "bad" and error_line["id"].startswith("5-")
    assert error_line["error"] == {"message": error_line["error"]["message"]}


def test_generate_error_as_string_and_nothing_done(tmp_path: Path) -> None:
    lines = [{"custom_id": "bad", "body": {}}]
    out, err = generate(_plan(tmp_path, lines, 1, error_field="string"), RESPONDER, NO_CANCEL)
    assert (out.lines, err.lines) == (0, 1)
    assert isinstance(_read(tmp_path / "err")[0]["error"], str)
    out, err = generate(_plan(tmp_path, lines, 0), RESPONDER, NO_CANCEL)
    assert (out.lines, err.lines) == (0, 0)


def test_generate_embeddings_lines_are_valid_json(tmp_path: Path) -> None:
    lines = [{"custom_id": str(i), "body": {"input": f"text {i}"}} for i in range(3)]
    plan = _plan(tmp_path, lines, 3, endpoint="/v1/embeddings")
    generate(plan, RESPONDER, NO_CANCEL)
    for line in _read(plan.out_path):
        assert len(line["response"]["body"]["data"][0]["embedding"]) == 8
