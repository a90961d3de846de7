"""parse_batch_file: every rule, with the line number it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchd.batchfile import (
    MAX_CUSTOM_ID_CHARS,
    MAX_DEPTH,
    FileLimits,
    ParsedFile,
    assign_custom_id,
    custom_id_for_line,
    format_reason,
    normalized_line,
    parse_batch_file,
    read_lines,
)
from batchd.errors import IntakeRejected, Problem

CHAT = "/v1/chat/completions"
LIMITS = FileLimits(max_file_bytes=1 << 20, max_line_bytes=4096, max_lines=1000)


def ok(custom_id: str | None = None, **extra: object) -> bytes:
    line: dict[str, object] = {"body": {"model": "m", "messages": []}, **extra}
    if custom_id is not None:
        line = {"custom_id": custom_id, **line}
    return json.dumps(line).encode()


def parse(tmp_path: Path, data: bytes, limits: FileLimits = LIMITS) -> ParsedFile:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    return parse_batch_file(path, endpoint=CHAT, limits=limits)


def problems(tmp_path: Path, data: bytes, limits: FileLimits = LIMITS) -> IntakeRejected:
    with pytest.raises(IntakeRejected) as info:
        parse(tmp_path, data, limits)
    return info.value


def lines_of(exc: IntakeRejected) -> list[int]:
    return [p.line for p in exc.problems]


def test_valid_file_records_ids_lines_and_sizes(tmp_path: Path) -> None:
    data = ok("a") + b"\n\n   \n" + ok("b") + b"\r\n" + ok() + b"\n"
    parsed = parse(tmp_path, data)
    assert parsed.custom_ids == ["a", "b", "line-5"]
    assert parsed.line_numbers == [1, 4, 5]
    assert parsed.request_count == 3
    assert parsed.assigned_ids == 1
    assert parsed.size_bytes == len(data)
    body = {"model": "m", "messages": []}
    assert parsed.normalized_sizes == [
        len(normalized_line("a", body)),
        len(normalized_line("b", body)),
        len(normalized_line("line-5", body)),
    ]


def test_sha256_is_of_the_whole_file(tmp_path: Path) -> None:
    import hashlib

    data = b"\xef\xbb\xbf" + ok("a") + b"\n"
    assert parse(tmp_path, data).sha256 == hashlib.sha256(data).hexdigest()


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    assert parse(tmp_path, ok("a") + b"\n" + ok("b")).custom_ids == ["a", "b"]


def test_a_leading_bom_is_tolerated(tmp_path: Path) -> None:
    assert parse(tmp_path, b"\xef\xbb\xbf" + ok("a") + b"\n").custom_ids == ["a"]


def test_a_bom_later_in_the_file_is_a_problem(tmp_path: Path) -> None:
    exc = problems(tmp_path, ok("a") + b"\n\xef\xbb\xbf" + ok("b") + b"\n")
    assert lines_of(exc) == [2]


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n \t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"],
    ids=["empty", "blank", "lone-bom", "bom-newline"],
)
def test_no_requests_is_a_whole_file_problem(tmp_path: Path, data: bytes) -> None:
    exc = problems(tmp_path, data)
    assert lines_of(exc) == [0]
    assert "no requests" in exc.problems[0].reason


@pytest.mark.parametrize(
    ("bad", "keyword"),
    [
        (b"not json", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b'{"custom_id": "x"}', "missing body"),
        (b'{"body": [1]}', "body must be a JSON object"),
        (b'{"body": null}', "body must be a JSON object"),
        (b'{"body": {}, "extra": 1}', "unknown key"),
        (b'{"body": {}, "custom_id": 7}', "custom_id"),
        (b'{"body": {}, "custom_id": ""}', "custom_id"),
        (b'{"body": {}, "method": "GET"}', "method"),
        (b'{"body": {}, "url": "/v1/embeddings"}', "url"),
        (b'{"body": {"a": NaN}}', "NaN"),
        (b'{"body": {"a": -Infinity}}', "Infinity"),
        (b'{"body": {"a": 1e999}}', "float"),
        (b'{"body": {"a": "\\ud800"}}', "surrogate"),
        (b'{"body": {"a": "\x00"}}', "NUL"),
        (b'{"body": {"a": "\xff"}}', "UTF-8"),
        (b'{"body": {"a": "\xed\xa0\x80"}}', "UTF-8"),  # an encoded surrogate
        (b'{"body": {"n": ' + b"9" * 4301 + b"}}", "4300"),
        (b'{"body": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
        (b'{"body": {"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}}", "nested"),
        (b"{" * 100_000, "JSON"),
        (b'{"custom_id": "a", "custom_id": "z", "body": {}}', "duplicate key 'custom_id'"),
        (b'{"body": {"model": "a"}, "body": {"model": "b"}}', "duplicate key 'body'"),
        (b'{"body": {}, "b\\u006fdy": {"x": 1}}', "duplicate key 'body'"),  # an escaped spelling
        (b'{"body": {}, "url": "/v1/chat/completions", "url": "/v1/chat/completions"}', "'url'"),
        (b'{"body": {}, "method": "POST", "method": "GET"}', "duplicate key 'method'"),
        (b'{"body": {}, "params": {}}', "both body and params"),
        (b'{"params": [1]}', "params must be a JSON object"),
        (b'{"params": {}, "p\\u0061rams": {}}', "duplicate key 'params'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_rule_reports_its_line(tmp_path: Path, bad: bytes, keyword: str) -> None:
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=1 << 20, max_lines=10)
    exc = problems(tmp_path, ok("a") + b"\n\n" + bad + b"\n" + ok("b") + b"\n", limits)
    assert lines_of(exc) == [3]
    assert keyword in exc.problems[0].reason


def test_a_key_repeated_inside_the_body_is_kept_as_json_reads_it(tmp_path: Path) -> None:
    # Only the line's own keys must be unique: what is sent is the normalized body (last wins),
    # so batchd and the provider read the same request.
    parsed = parse(tmp_path, b'{"custom_id": "a", "body": {"model": "x", "model": "y"}}\n')
    assert parsed.normalized_sizes == [len(normalized_line("a", {"model": "y"}))]


def test_nesting_up_to_the_limit_is_accepted(tmp_path: Path) -> None:
    depth = MAX_DEPTH - 2  # the line object and the body are two levels
    line = b'{"body": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    assert parse(tmp_path, line + b"\n").request_count == 1


def test_openai_style_lines_are_accepted_when_url_matches(tmp_path: Path) -> None:
    parsed = parse(tmp_path, ok("a", method="POST", url=CHAT) + b"\n")
    assert parsed.custom_ids == ["a"]
    # method/url are dropped from the normalized line
    assert parsed.normalized_sizes == [len(normalized_line("a", {"model": "m", "messages": []}))]


def test_anthropic_native_lines_are_read_with_params_as_their_body(tmp_path: Path) -> None:
    params = {"model": "claude", "max_tokens": 5, "messages": []}
    line = json.dumps({"custom_id": "a", "params": params}).encode()
    parsed = parse(tmp_path, line + b"\n")
    assert parsed.custom_ids == ["a"]
    assert parsed.normalized_sizes == [len(normalized_line("a", params))]


def test_duplicate_custom_id_names_both_lines(tmp_path: Path) -> None:
    exc = problems(tmp_path, ok("a") + b"\n" + ok("b") + b"\n" + ok("a") + b"\n")
    assert lines_of(exc) == [3]
    assert "(line 1)" in exc.problems[0].reason


def test_custom_id_length_limit(tmp_path: Path) -> None:
    assert parse(tmp_path, ok("x" * MAX_CUSTOM_ID_CHARS) + b"\n").request_count == 1
    assert lines_of(problems(tmp_path, ok("x" * (MAX_CUSTOM_ID_CHARS + 1)) + b"\n")) == [1]


def test_null_custom_id_is_assigned(tmp_path: Path) -> None:
    parsed = parse(tmp_path, b'{"custom_id": null, "body": {}}\n')
    assert (parsed.custom_ids, parsed.assigned_ids) == (["line-1"], 1)


def test_assigned_ids_never_collide_with_explicit_ones(tmp_path: Path) -> None:
    # line 1 has no id; "line-1" and "line-1-2" are taken by later explicit ids
    data = ok() + b"\n" + ok("line-1") + b"\n" + ok("line-1-2") + b"\n" + ok() + b"\n"
    parsed = parse(tmp_path, data)
    assert parsed.custom_ids == ["line-1-3", "line-1", "line-1-2", "line-4"]
    assert len(set(parsed.custom_ids)) == 4
    assert parsed.normalized_sizes[0] == len(
        normalized_line("line-1-3", {"model": "m", "messages": []})
    )


def test_assignment_rule() -> None:
    assert custom_id_for_line(7) == "line-7"
    assert assign_custom_id(7, set()) == "line-7"
    assert assign_custom_id(7, {"line-7"}) == "line-7-2"
    assert assign_custom_id(7, {"line-7", "line-7-2"}) == "line-7-3"


def test_line_over_the_limit_is_a_problem_and_scanning_goes_on(tmp_path: Path) -> None:
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=100, max_lines=10)
    long = b'{"body": {"a": "' + b"x" * 500 + b'"}}'
    exc = problems(tmp_path, ok("a") + b"\n" + long + b"\n" + b"bad\n" + ok("b") + b"\n", limits)
    assert lines_of(exc) == [2, 3]


def test_line_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    line = ok("a")
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=len(line), max_lines=10)
    assert parse(tmp_path, line + b"\r\n" + line.replace(b'"a"', b'"b"'), limits).request_count == 2
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=len(line) - 1, max_lines=10)
    assert lines_of(problems(tmp_path, line + b"\n", limits)) == [1]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b""])
def test_line_limit_around_the_bom(tmp_path: Path, bom: bytes, newline: bytes) -> None:
    line = ok("a")
    second = b"\n" + ok("b") if newline else b""
    fits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=len(line), max_lines=10)
    assert parse(tmp_path, bom + line + newline + second, fits).line_numbers[0] == 1
    short = FileLimits(max_file_bytes=1 << 20, max_line_bytes=len(line) - 3, max_lines=10)
    exc = problems(tmp_path, bom + line + newline + b"bad" + newline, short)
    assert lines_of(exc) == ([1, 2] if newline else [1])


def test_lines_are_read_with_a_bounded_buffer() -> None:
    class Recorder:
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0
            self.sizes: list[int] = []

        def readline(self, limit: int) -> bytes:
            self.sizes.append(limit)
            end = self.data.find(b"\n", self.pos, self.pos + limit)
            stop = min(len(self.data), self.pos + limit) if end < 0 else end + 1
            chunk, self.pos = self.data[self.pos : stop], stop
            return chunk

    handle = Recorder(b"x" * 1_000_000 + b"\n" + b"{}\n")
    lines = list(read_lines(handle, 1000))  # type: ignore[arg-type]
    assert [(line.number, line.content) for line in lines] == [(1, None), (2, b"{}")]
    assert max(handle.sizes) <= 64 * 1024
    assert handle.sizes[0] == 1000 + 5  # the first line may carry a BOM


def test_too_many_requests(tmp_path: Path) -> None:
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=1000, max_lines=2)
    data = b"\n".join([ok("a"), b"", ok("b"), ok("c"), ok("d")]) + b"\n"
    exc = problems(tmp_path, data, limits)
    assert lines_of(exc) == [4]
    assert parse(tmp_path, b"\n".join([ok("a"), b"", ok("b")]), limits).request_count == 2


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    data = ok("a") + b"\n"
    limits = FileLimits(max_file_bytes=len(data) - 1, max_line_bytes=1000, max_lines=10)
    assert lines_of(problems(tmp_path, data, limits)) == [0]
    limits = FileLimits(max_file_bytes=len(data), max_line_bytes=1000, max_lines=10)
    assert parse(tmp_path, data, limits).size_bytes == len(data)


def test_problems_are_capped_and_marked_truncated(tmp_path: Path) -> None:
    exc = problems(tmp_path, b"bad\n" * 60)
    assert lines_of(exc) == list(range(1, 51))
    assert exc.truncated is True
    exc = problems(tmp_path, b"bad\n" * 50 + ok("a") + b"\n")
    assert len(exc.problems) == 50
    assert exc.truncated is False


def test_custom_problem_cap(tmp_path: Path) -> None:
    limits = FileLimits(max_file_bytes=1 << 20, max_line_bytes=1000, max_lines=100, max_problems=3)
    exc = problems(tmp_path, b"bad\n" * 10, limits)
    assert (lines_of(exc), exc.truncated) == ([1, 2, 3], True)


def test_format_reason_lists_every_problem_with_its_line() -> None:
    exc = IntakeRejected([Problem(3, "missing body"), Problem(0, "file larger than 9 bytes")])
    text = format_reason(exc, "batch.jsonl")
    head, *rest = text.splitlines()
    assert "batch.jsonl" in head and "2" in head
    assert rest == ["line 3: missing body", "file larger than 9 bytes"]
    assert text.endswith("\n")
    truncated = format_reason(IntakeRejected([Problem(1, "x")], truncated=True), "b.jsonl")
    assert "first 1" in truncated.splitlines()[0]
