"""``providers.staging``: neutral request lines read back and encoded, and the custom_ids a
provider may send instead of the user's (``indexed_id``, read back by ``index_of``)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from batchd.batchfile import normalized_line
from batchd.providers.base import ChunkInput
from batchd.providers.staging import (
    NeutralRequest,
    dump_line,
    index_of,
    indexed_id,
    read_requests,
    write_encoded,
)

SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # Anthropic's custom_id rule


def chunk(tmp_path: Path, ids: list[str]) -> ChunkInput:
    path = tmp_path / "chunk-0000.jsonl"
    path.write_bytes(b"".join(normalized_line(i, {"messages": [{"content": i}]}) for i in ids))
    return ChunkInput(path, "job_0190abcdef123456789abc", "/v1/chat/completions", "m")


def test_requests_are_read_back_in_order_with_their_index(tmp_path: Path) -> None:
    got = list(read_requests(chunk(tmp_path, ["a", "b b/é", "c"]).path))
    assert [(r.index, r.custom_id) for r in got] == [(0, "a"), (1, "b b/é"), (2, "c")]
    assert got[1].body == {"messages": [{"content": "b b/é"}]}


def test_an_encoded_file_is_whole_private_and_the_same_every_time(tmp_path: Path) -> None:
    source = chunk(tmp_path, ["a", "b"])

    def encode(request: NeutralRequest) -> bytes:
        return dump_line({"custom_id": request.custom_id, "url": source.endpoint})

    first = write_encoded(source, tmp_path / "one.jsonl", encode).read_bytes()
    again = write_encoded(source, tmp_path / "one.jsonl", encode)  # replaces, never appends
    assert again.read_bytes() == first
    assert [json.loads(x)["custom_id"] for x in first.splitlines()] == ["a", "b"]
    assert stat.S_IMODE(again.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-0000.jsonl", "one.jsonl"]


def test_a_failed_encoding_leaves_nothing_behind(tmp_path: Path) -> None:
    source = chunk(tmp_path, ["a", "b"])

    def broken(request: NeutralRequest) -> bytes:
        if request.index == 1:
            raise ValueError("cannot encode")
        return b"x\n"

    with pytest.raises(ValueError):
        write_encoded(source, tmp_path / "out.jsonl", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-0000.jsonl"]


@pytest.mark.parametrize(
    "job_id", ["job_0190abcdef123456789abc", "job.with:odd/chars", "j" * 200, "x"]
)
def test_indexed_ids_follow_the_strictest_rule_and_read_back(job_id: str) -> None:
    for index in (0, 7, 99_999):
        sent = indexed_id(job_id, index)
        assert SAFE.match(sent), sent
        assert index_of(job_id, sent) == index


@pytest.mark.parametrize(
    "sent",
    [
        "line-1",
        "job_other-3",
        "job_0190abcdef123456789abc-",
        "job_0190abcdef123456789abc-07",
        "job_0190abcdef123456789abc-x",
        "job_0190abcdef123456789abc--1",
    ],
)
def test_an_id_that_is_not_this_job_s_maps_to_nothing(sent: str) -> None:
    assert index_of("job_0190abcdef123456789abc", sent) is None
