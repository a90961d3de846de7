"""The orjson fast path for batch lines (``batchd.line_json``) agrees with the exact decoder:
the same value or the same refusal, and lines that decode to the same JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchd import batchfile
from batchd.batchfile import BadLine, encode_request, normalized_line, read_request

CHAT = "/v1/chat/completions"


def same(a: Any, b: Any) -> bool:
    """Equal JSON values of equal types (1 is not 1.0 nor True; -0.0 is not 0.0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


def outcome(decode: Any, content: bytes) -> tuple[str, Any]:
    try:
        return "value", decode(content)
    except BadLine as exc:
        return "refused", str(exc)


def check(content: bytes) -> None:
    fast_kind, fast = outcome(lambda c: batchfile._decode_line(c)[0], content)
    exact_kind, exact = outcome(batchfile._decode, content)
    assert fast_kind == exact_kind
    if fast_kind == "refused":
        assert fast == exact
        return
    assert same(fast, exact)
    if not isinstance(exact, dict) or not isinstance(exact.get("body"), dict):
        return
    try:
        reference = normalized_line("id", exact["body"])
    except ValueError:
        with pytest.raises(ValueError):
            encode_request("id", exact["body"], batchfile._decode_line(content)[1])
        return
    written = encode_request("id", fast["body"], batchfile._decode_line(content)[1])
    assert same(json.loads(written), json.loads(reference))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
KEYS = ["body", "custom_id", "method", "url", "b\\u006fdy", "x", "custom\\/id"]
ODD_NUMBERS = ["1e400", "-1e400", "NaN", "123456789012345678901", "1e-05", "-0", "1E2"]


@st.composite
def raw_lines(draw: st.DrawFn) -> bytes:
    """Objects written member by member (so keys may repeat, or be spelled with escapes), their
    values written by json (ASCII-escaped or not) or odd numbers as text."""
    ascii_only = draw(st.booleans())
    written = values.map(lambda v: json.dumps(v, ensure_ascii=ascii_only))
    members = draw(
        st.lists(
            st.tuples(st.sampled_from(KEYS), written | st.sampled_from(ODD_NUMBERS)), max_size=5
        )
    )
    line = "{" + ",".join(f'"{key}":{text}' for key, text in members) + "}"
    return line.encode("utf-8", "surrogatepass")


@settings(max_examples=400)
@given(raw_lines() | st.binary(max_size=64) | values.map(lambda v: json.dumps(v).encode()))
def test_fast_and_exact_agree(content: bytes) -> None:
    check(content)


@pytest.mark.parametrize(
    "content",
    [
        b'{"body": {}, "b\\u006fdy": {}}',  # the same key twice, once spelled with an escape
        b'{"body": {}, "body": {}}',
        b'{"x": 1, "x": 2, "body": {}}',  # a duplicate is named before an unknown key
        b'{"body": {"n": 123456789012345678901234567890}}',  # beyond 64 bits: kept exact
        b'{"body": {"n": 1e400}}',  # infinite: refused when written
        b'{"body": {"a": 1, "a": 2}}',  # nested: the last one wins, as with json
        b'{"body": {"t": "\\ud800"}}',  # a lone surrogate: refused when written
        b'{"body": NaN}',
        b'{"body": {"s": "caf\xc3\xa9", "f": [0.1, -0.0, 1e-05, 2.5e300]}}',
    ],
)
def test_edge_cases_agree(content: bytes) -> None:
    check(content)


def test_a_plain_line_takes_the_fast_path() -> None:
    line = b'{"custom_id": "a", "body": {"model": "m", "temperature": 0.7, "n": [1, 2]}}'
    _, body, fast = read_request(line, CHAT)
    assert fast
    assert encode_request("a", body, fast) == (
        b'{"custom_id":"a","body":{"model":"m","temperature":0.7,"n":[1,2]}}\n'
    )


def test_a_big_integer_is_written_exactly() -> None:
    _, body, fast = read_request(b'{"body": {"n": 123456789012345678901234567890}}', CHAT)
    assert not fast
    assert b"123456789012345678901234567890" in encode_request("a", body, fast)


def test_a_key_spelled_with_an_escape_is_still_a_duplicate() -> None:
    with pytest.raises(BadLine, match="duplicate key 'body'"):
        read_request(b'{"body": {}, "b\\u006fdy": {}}', CHAT)
