"""orjson for batch lines, where it certainly gives what the exact decoder in ``batchfile`` gives.

Decoding and re-encoding every request line with the standard library was a tenth of the
daemon's CPU at intake (issue 22); orjson does both about eight times as fast. It differs from
the exact decoder (``json`` with batchd's hooks) in ways that matter here, so a line takes the
fast path only when none of them can apply:

* orjson keeps the last of two equal keys silently, where a line's top-level object must refuse
  them: every top-level key must appear exactly once in the raw line, spelled plainly (no line
  with a ``\\u`` or ``\\/`` escape, the only other spellings of a key, is fast);
* it reads an integer beyond 64 bits as a float: no line with 19 digits in a row is fast;
* everything it refuses (NaN, Infinity, overflowing floats, invalid UTF-8, lone surrogates,
  control characters in strings, deep nesting) goes to the exact decoder, which says why.

A value it decoded holds only finite floats, 64-bit integers and valid strings, so ``encode``
cannot fail on it; its numbers are written the way orjson writes them (``1e-05`` as
``0.00001``, the same value). A value the exact decoder read is written by
``batchfile.normalized_line`` (standard library), which refuses what JSON cannot carry.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

_NEEDS_EXACT: Final = re.compile(rb"\\[u/]|[0-9]{19}")


def decode(content: bytes) -> Any | None:
    """The line's value, or None when the exact decoder must read it (see the module)."""
    if _NEEDS_EXACT.search(content) is not None:
        return None
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None  # the exact decoder says why
    if isinstance(value, dict):
        for key in value:  # a key given twice would have been collapsed: the exact decoder
            if content.count(b'"' + key.encode() + b'"') != 1:  # names it
                return None
    return value


def encode(custom_id: str, body: object) -> bytes:
    """The normalized line of a request whose body ``decode`` gave: compact JSON, keys in input
    order, UTF-8, newline-terminated."""
    return orjson.dumps({"custom_id": custom_id, "body": body}) + b"\n"
