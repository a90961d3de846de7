"""plan_chunks and write_chunk: limits, cover, determinism, round trip."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchd.batchfile import FileLimits, ParsedFile, parse_batch_file
from batchd.chunks import plan_chunks, write_chunk
from batchd.errors import IntakeRejected
from batchd.store.base import ChunkPlan

CHAT = "/v1/chat/completions"
LIMITS = FileLimits(max_file_bytes=1 << 20, max_line_bytes=4096, max_lines=1000)


def check_plan(
    sizes: list[int], chunks: list[ChunkPlan], max_requests: int, max_bytes: int
) -> None:
    # contiguous, in order, covering every request exactly once
    assert [c.index for c in chunks] == list(range(len(chunks)))
    position = 0
    for chunk in chunks:
        assert chunk.line_start == position and chunk.line_count >= 1
        assert chunk.byte_count == sum(sizes[position : position + chunk.line_count])
        assert chunk.line_count <= max_requests and chunk.byte_count <= max_bytes
        position += chunk.line_count
    assert position == len(sizes)
    # greedy, so minimal: each chunk could not take the next request
    for chunk, following in itertools.pairwise(chunks):
        nxt = sizes[following.line_start]
        assert chunk.line_count == max_requests or chunk.byte_count + nxt > max_bytes


@given(
    sizes=st.lists(st.integers(1, 100), max_size=200),
    max_requests=st.integers(1, 30),
    max_bytes=st.integers(100, 1000),
)
def test_plan_properties(sizes: list[int], max_requests: int, max_bytes: int) -> None:
    chunks = plan_chunks(sizes, max_requests=max_requests, max_bytes=max_bytes)
    check_plan(sizes, chunks, max_requests, max_bytes)


def test_plan_examples() -> None:
    assert plan_chunks([], max_requests=2, max_bytes=10) == []
    assert plan_chunks([3, 3, 3], max_requests=2, max_bytes=100) == [
        ChunkPlan(0, 0, 2, 6),
        ChunkPlan(1, 2, 1, 3),
    ]
    assert plan_chunks([6, 5, 4], max_requests=10, max_bytes=10) == [
        ChunkPlan(0, 0, 1, 6),
        ChunkPlan(1, 1, 2, 9),
    ]
    assert plan_chunks([5, 5], max_requests=10, max_bytes=10) == [ChunkPlan(0, 0, 2, 10)]


def test_a_request_over_the_byte_limit_is_rejected_with_its_line() -> None:
    with pytest.raises(IntakeRejected) as info:
        plan_chunks([5, 50, 5, 60], max_requests=10, max_bytes=10, line_numbers=[1, 3, 4, 9])
    assert [p.line for p in info.value.problems] == [3, 9]
    with pytest.raises(IntakeRejected) as info:
        plan_chunks([5, 50], max_requests=10, max_bytes=10)
    assert [p.line for p in info.value.problems] == [2]


def test_plan_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_chunks([1], max_requests=0, max_bytes=10)


# ------------------------------------------------------------------------------ write_chunk


def make(tmp_path: Path, lines: list[bytes]) -> tuple[Path, ParsedFile]:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    return path, parse_batch_file(path, endpoint=CHAT, limits=LIMITS)


SAMPLE = [
    b'{"custom_id": "a", "body": {"model": "m", '
    b'"messages": [{"role": "user", "content": "\\u00e9t\\u00e9"}]}}',
    b"",
    b'{"body": {"n": 1}, "method": "POST", "url": "/v1/chat/completions"}',
    b'  {"custom_id": "line-3", "body": {"z": 1, "a": [1, 2.5, true, null]}}  ',
    b'{"custom_id": "c", "url": "/v1/chat/completions", "body": {}}',
]


def write_all(path: Path, parsed: ParsedFile, out: Path, max_requests: int) -> list[bytes]:
    chunks = plan_chunks(parsed.normalized_sizes, max_requests=max_requests, max_bytes=1 << 20)
    data = []
    for chunk in chunks:
        dest = out / f"chunk-{chunk.index}.jsonl"
        written = write_chunk(path, parsed, chunk, dest, endpoint=CHAT)
        assert written == dest.stat().st_size == chunk.byte_count
        data.append(dest.read_bytes())
    return data


@pytest.mark.parametrize("max_requests", [1, 2, 3, 10])
def test_round_trip(tmp_path: Path, max_requests: int) -> None:
    path, parsed = make(tmp_path, SAMPLE)
    out = b"".join(write_all(path, parsed, tmp_path, max_requests))
    records = [json.loads(line) for line in out.splitlines()]
    assert (
        [r["custom_id"] for r in records] == parsed.custom_ids == ["a", "line-3-2", "line-3", "c"]
    )
    assert all(set(r) == {"custom_id", "body"} for r in records)
    assert records[0]["body"]["messages"][0]["content"] == "été"
    assert records[2]["body"] == {"z": 1, "a": [1, 2.5, True, None]}
    assert len(out) == sum(parsed.normalized_sizes)
    assert [len(line) + 1 for line in out.splitlines()] == parsed.normalized_sizes


def test_same_input_same_bytes(tmp_path: Path) -> None:
    path, parsed = make(tmp_path, SAMPLE)
    first = write_all(path, parsed, tmp_path, 2)
    (tmp_path / "again").mkdir()
    assert write_all(path, parsed, tmp_path / "again", 2) == first
    reparsed = parse_batch_file(path, endpoint=CHAT, limits=LIMITS)
    assert write_all(path, reparsed, tmp_path, 2) == first


def test_chunk_is_private_and_no_temp_is_left(tmp_path: Path) -> None:
    path, parsed = make(tmp_path, SAMPLE)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".c.jsonl.part").write_bytes(b"left over by a crash")
    write_chunk(
        path,
        parsed,
        ChunkPlan(0, 0, 4, sum(parsed.normalized_sizes)),
        out / "c.jsonl",
        endpoint=CHAT,
    )
    assert os.listdir(out) == ["c.jsonl"]
    assert stat.S_IMODE((out / "c.jsonl").stat().st_mode) == 0o600


def test_without_offsets_the_file_is_read_from_the_start(tmp_path: Path) -> None:
    from dataclasses import replace

    path, parsed = make(tmp_path, SAMPLE)
    bare = replace(parsed, byte_offsets=[])
    chunk = ChunkPlan(1, 2, 2, sum(parsed.normalized_sizes[2:]))
    a, b = tmp_path / "a", tmp_path / "b"
    write_chunk(path, parsed, chunk, a, endpoint=CHAT)
    write_chunk(path, bare, chunk, b, endpoint=CHAT)
    assert a.read_bytes() == b.read_bytes()
    assert [json.loads(x)["custom_id"] for x in a.read_bytes().splitlines()] == ["line-3", "c"]


@pytest.mark.parametrize(
    "replacement",
    [
        b'{"custom_id": "other", "body": {"n": 1}}',  # a different explicit id
        b'{"body": {"n": 12345}}',  # a different size
        b"garbage",
    ],
)
def test_a_file_changed_after_parsing_is_refused(tmp_path: Path, replacement: bytes) -> None:
    path, parsed = make(tmp_path, SAMPLE)
    changed = [*SAMPLE[:2], replacement, *SAMPLE[3:]]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(changed) + b"\n")
    with pytest.raises(IntakeRejected):
        write_chunk(path, parsed, ChunkPlan(0, 0, 4, 0), tmp_path / "c.jsonl", endpoint=CHAT)
    assert not (tmp_path / "c.jsonl").exists()
    assert not (tmp_path / ".c.jsonl.part").exists()


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path, parsed = make(tmp_path, SAMPLE)
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(SAMPLE[:3]) + b"\n")
    with pytest.raises(IntakeRejected):
        write_chunk(path, parsed, ChunkPlan(0, 0, 4, 0), tmp_path / "c.jsonl", endpoint=CHAT)


# ------------------------------------------------------------------------------ parsed once


@pytest.mark.parametrize("max_requests", [1, 2, 3, 10])
def test_kept_lines_write_what_a_second_read_writes(tmp_path: Path, max_requests: int) -> None:
    path, reread = make(tmp_path, SAMPLE)
    kept = parse_batch_file(path, endpoint=CHAT, limits=LIMITS, keep_lines_up_to=1 << 20)
    assert reread.normalized is None
    assert kept.normalized is not None  # "line-3-2" (an assigned id moved aside) included
    assert [len(line) for line in kept.normalized] == kept.normalized_sizes
    (tmp_path / "kept").mkdir()
    assert write_all(path, kept, tmp_path / "kept", max_requests) == write_all(
        path, reread, tmp_path, max_requests
    )


def test_kept_lines_are_not_read_again(tmp_path: Path) -> None:
    path, reread = make(tmp_path, SAMPLE)
    kept = parse_batch_file(path, endpoint=CHAT, limits=LIMITS, keep_lines_up_to=1 << 20)
    expected = write_all(path, reread, tmp_path, 10)
    path.unlink()  # what was validated is written, whatever the file holds now
    (tmp_path / "kept").mkdir()
    assert write_all(path, kept, tmp_path / "kept", 10) == expected


def test_a_file_over_the_limit_keeps_no_lines(tmp_path: Path) -> None:
    path, _ = make(tmp_path, SAMPLE)
    size = path.stat().st_size
    at = parse_batch_file(path, endpoint=CHAT, limits=LIMITS, keep_lines_up_to=size)
    over = parse_batch_file(path, endpoint=CHAT, limits=LIMITS, keep_lines_up_to=size - 1)
    assert at.normalized is not None
    assert over.normalized is None
