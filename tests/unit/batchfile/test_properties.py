"""Whatever the bytes, the parser raises only IntakeRejected; what it accepts is consistent."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from batchd.batchfile import FileLimits, ParsedFile, parse_batch_file
from batchd.chunks import plan_chunks, write_chunk
from batchd.errors import IntakeRejected

CHAT = "/v1/chat/completions"
LIMITS = FileLimits(max_file_bytes=1 << 16, max_line_bytes=2048, max_lines=50)
NASTY = [
    b"",
    b"\xef\xbb\xbf",
    b"\x00",
    b'{"body": {}, "custom_id": "\x00"}\n',
    b"\xff\xfe\xfd\n",
    b"\xc3\x28\n",
    b'{"body": {"n": ' + b"1" * 5000 + b"}}\n",
    b'{"body": {"n": -' + b"1" * 4301 + b"}}\n",
    b'{"body": ' + b"[" * 50_000 + b"\n",
    b'{"body": {"a": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}}\n",
    b'{"body": {}}\n' * 3,
    b'{"custom_id": "x", "body": {}}\n{"custom_id": "x", "body": {}}\n',
    b'{"body": {"a": "\\udfff"}}\n',
    b'{"body": {"a": 1e400}}\n',
    b"\r\n\r\n",
    b"\n" * 100,
    b"x" * 5000,
]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
line_objects = st.fixed_dictionaries(
    {},
    optional={
        "custom_id": st.none()
        | st.text(max_size=12)
        | st.sampled_from(["a", "b", "line-1", "line-2"]),
        "body": json_values,
        "method": st.sampled_from(["POST", "GET"]),
        "url": st.sampled_from([CHAT, "/v1/embeddings"]),
        "extra": json_scalars,
    },
)
lines = st.one_of(
    line_objects.map(lambda obj: json.dumps(obj).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
    st.just(b""),
)
files = st.lists(lines, max_size=12).map(b"\n".join) | st.binary(max_size=512)


def run(data: bytes) -> ParsedFile | IntakeRejected:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(data)
        try:
            parsed = parse_batch_file(path, endpoint=CHAT, limits=LIMITS)
        except IntakeRejected as exc:
            return exc
        written = check_written(path, parsed, Path(tmp))
        # parsed once: the lines kept by the parse are the bytes a second read writes
        kept = parse_batch_file(path, endpoint=CHAT, limits=LIMITS, keep_lines_up_to=len(data))
        assert kept.normalized is not None
        assert b"".join(kept.normalized) == written
        return parsed


def check_written(path: Path, parsed: ParsedFile, out: Path) -> bytes:
    chunks = plan_chunks(parsed.normalized_sizes, max_requests=4, max_bytes=1 << 20)
    written = b""
    for chunk in chunks:
        dest = out / f"c{chunk.index}.jsonl"
        assert write_chunk(path, parsed, chunk, dest, endpoint=CHAT) == chunk.byte_count
        written += dest.read_bytes()
    assert len(written) == sum(parsed.normalized_sizes)
    records = [json.loads(line) for line in written.splitlines()]
    assert [r["custom_id"] for r in records] == parsed.custom_ids
    assert all(isinstance(r["body"], dict) for r in records)
    return written


def check_invariants(result: ParsedFile | IntakeRejected, data: bytes) -> None:
    if isinstance(result, IntakeRejected):
        assert 1 <= len(result.problems) <= LIMITS.max_problems
        assert all(0 <= p.line <= data.count(b"\n") + 1 for p in result.problems)
        return
    n = result.request_count
    assert len(result.custom_ids) == len(result.line_numbers) == len(result.normalized_sizes) == n
    assert len(set(result.custom_ids)) == n >= 1
    assert result.line_numbers == sorted(set(result.line_numbers))
    assert 0 <= result.assigned_ids <= n
    assert result.size_bytes == len(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(files)
def test_any_input_gives_a_result_or_intake_rejected(data: bytes) -> None:
    check_invariants(run(data), data)


mostly_valid = st.fixed_dictionaries(
    {"body": st.dictionaries(st.text(max_size=8), json_values, max_size=4)},
    optional={
        "custom_id": st.none() | st.sampled_from(["a", "b", "line-1", "line-2", "line-3-2", "é"]),
        "method": st.just("POST"),
        "url": st.just(CHAT),
    },
)


@settings(max_examples=100)
@given(st.lists(mostly_valid | st.just({}), min_size=1, max_size=10), st.booleans())
def test_json_ish_lines(objects: list[dict[str, object]], blank_lines: bool) -> None:
    joiner = b"\n\n" if blank_lines else b"\r\n"
    data = joiner.join(b"" if not o else json.dumps(o).encode() for o in objects)
    check_invariants(run(data), data)


@example(b"")
@given(st.binary(max_size=256))
def test_arbitrary_bytes_after_a_bom(data: bytes) -> None:
    check_invariants(run(b"\xef\xbb\xbf" + data), b"\xef\xbb\xbf" + data)


@pytest.mark.parametrize("data", NASTY)
def test_named_nasty_inputs(data: bytes) -> None:
    result = run(data)
    check_invariants(result, data)
    if data not in (b'{"body": {}}\n' * 3,):
        assert isinstance(result, IntakeRejected)


def finite(obj: object) -> bool:
    try:
        json.dumps(obj, allow_nan=False)
    except ValueError:
        return False
    return True


def spell(key: str, escaped: bool) -> str:
    """``key`` as JSON text, its first letter as a ``\\u`` escape when ``escaped``."""
    return f'"\\u{ord(key[0]):04x}{key[1:]}"' if escaped else f'"{key}"'


@settings(max_examples=100, deadline=None)
@given(
    st.lists(mostly_valid, min_size=1, max_size=6),
    st.data(),
    st.sampled_from(["custom_id", "body", "method", "url"]),
    st.booleans(),
)
def test_a_line_repeating_a_key_is_refused_with_its_line_number(
    objects: list[dict[str, object]], data: st.DataObject, key: str, escaped: bool
) -> None:
    assume(all(finite(o) for o in objects))  # NaN/Infinity stop the line before its keys count
    index = data.draw(st.integers(0, len(objects) - 1))
    value = data.draw(st.none() | st.booleans() | st.integers() | st.text(max_size=8))
    texts = [json.dumps(o) for o in objects]
    texts[index] = texts[index][:-1] + f", {spell(key, escaped)}: {json.dumps(value)}}}"
    if key not in objects[index]:  # the key once more, so that it is there twice
        texts[index] = texts[index][:-1] + f", {spell(key, not escaped)}: {json.dumps(value)}}}"
    # a line over the limit is refused for its length before its keys are read
    assume(all(len(text.encode()) <= LIMITS.max_line_bytes for text in texts))
    payload = "\n".join(texts).encode()
    result = run(payload)
    check_invariants(result, payload)
    assert isinstance(result, IntakeRejected)
    assert any(
        p.line == index + 1 and p.reason.startswith(f"duplicate key {key!r}")
        for p in result.problems
    ), result.problems
