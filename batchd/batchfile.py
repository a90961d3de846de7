"""Parse and validate one JSONL batch file (``batchd.chunks`` splits it into chunks).

Pure apart from reading the file (streamed, one bounded line at a time). Whatever the bytes,
parsing raises only ``IntakeRejected`` (never ``ValueError``, ``RecursionError`` or
``UnicodeError``), carrying up to ``max_problems`` problems with their 1-based line numbers.

Rules: strict UTF-8 (one leading BOM tolerated); no NUL bytes; blank lines skipped; each other
line one JSON object ``{"custom_id"?, "body", "method"?, "url"?}`` with ``body`` an object (or
Anthropic's native ``{"custom_id"?, "params"}``, read as its body), no
other keys and none twice (also spelled with escapes: ``"b\\u006fdy"`` is ``body``), nesting at
most ``MAX_DEPTH``, no NaN/Infinity and no lone surrogate escapes;
``custom_id`` (if present and not null) a non-empty string of at most ``MAX_CUSTOM_ID_CHARS``,
unique in the file; OpenAI style ``method`` must be ``POST`` and ``url`` the route's endpoint.
A missing ``custom_id`` is assigned ``line-<n>`` (``n`` the 1-based line number); if that is
taken by an explicit id, ``line-<n>-2``, ``line-<n>-3``, ... (the first free one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from batchd import line_json
from batchd.errors import IntakeRejected, Problem
from batchd.spool import display_name

BOM: Final = b"\xef\xbb\xbf"
MAX_DEPTH: Final = 64
MAX_CUSTOM_ID_CHARS: Final = 512
ALLOWED_KEYS: Final = frozenset({"custom_id", "body", "params", "method", "url"})
_SKIP_CHUNK: Final = 64 * 1024
MAX_MODELS_TRACKED: Final = 20  # distinct body.model values counted per file (the rest: not)
PROGRESS_STEP_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int
    max_line_bytes: int
    max_lines: int
    max_problems: int = 50


@dataclass(frozen=True)
class ParsedFile:
    sha256: str
    size_bytes: int
    request_count: int
    custom_ids: list[str]  # in input order, assigned ids included
    line_numbers: list[int]  # 1-based file line of each request
    normalized_sizes: list[int]  # bytes of each request's normalized line, newline included
    assigned_ids: int  # how many custom_ids were assigned
    byte_offsets: Sequence[int] = field(default_factory=lambda: array("q"), repr=False)
    # body.model of the requests that name one: model -> (requests, first line), the first
    # MAX_MODELS_TRACKED distinct names only
    models: dict[str, tuple[int, int]] = field(default_factory=dict)
    # each request's normalized line (what ``normalized_sizes`` counts), kept only when the
    # parse was asked to (``keep_lines_up_to``): ``chunks.write_chunk`` then writes these bytes
    # instead of reading and parsing the file a second time
    normalized: Sequence[bytes] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based
    offset: int  # byte offset of the line in the file
    content: bytes | None  # without the line terminator; None: longer than the limit


class BadLine(Exception):
    """One line is invalid; the message is the reason (it never echoes the line)."""


class _Stop(Exception):
    """Scanning ends early (too many problems or requests, file too large)."""


# ------------------------------------------------------------------------------ reading


class _Counting:
    """A binary reader that hashes and counts every byte read through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.count = 0

    def readline(self, limit: int) -> bytes:
        data = self._handle.readline(limit)
        self.digest.update(data)
        self.count += len(data)
        return data


def read_lines(
    handle: IO[bytes] | _Counting, max_line_bytes: int, *, number: int = 0, offset: int = 0
) -> Iterator[Line]:
    """Every physical line after line ``number`` (which ends at byte ``offset``), holding at
    most ``max_line_bytes + 5`` bytes at once. A BOM opening the file is dropped (and does not
    count towards the first line's length)."""
    while True:
        limit = max_line_bytes + 2 + (len(BOM) if offset == 0 else 0)
        raw = handle.readline(limit)
        if not raw:
            return
        number += 1
        start = offset
        offset += len(raw)
        cut = not raw.endswith(b"\n") and len(raw) >= limit
        if start == 0 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if cut:
            offset += _skip_rest(handle)
            yield Line(number, start, None)
            continue
        content = raw.removesuffix(b"\n").removesuffix(b"\r")
        yield Line(number, start, content if len(content) <= max_line_bytes else None)


def _skip_rest(handle: IO[bytes] | _Counting) -> int:
    skipped = 0
    while chunk := handle.readline(_SKIP_CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _is_blank(content: bytes) -> bool:
    return not content.strip(b" \t\r")


# ------------------------------------------------------------------------------ one line


def _reject_constant(name: str) -> Any:
    raise BadLine(f"{name} is not valid JSON")


class _Duplicated(dict[str, Any]):
    """An object in which a key appeared more than once (the last value kept, as ``json``
    does); ``keys_repeated`` names them. Only the line's top-level object is refused."""

    keys_repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Duplicated(obj)
    counts = Counter(key for key, _ in pairs)
    marked.keys_repeated = tuple(key for key, n in counts.items() if n > 1)
    return marked


# Built once: ``json.loads`` with keyword arguments builds a decoder per call (measured: this is
# faster than the old ``json.loads(text, parse_constant=...)`` even with the hook).
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object)


def _depth_ok(value: object) -> bool:
    """Nesting at most ``MAX_DEPTH`` (iterative: deep input must not recurse)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = list(node.values()) if isinstance(node, dict) else node
        if isinstance(children, list):
            if depth > MAX_DEPTH:
                return False
            stack.extend((child, depth + 1) for child in children)
    return True


def _decode(content: bytes) -> Any:
    """The JSON value of one line, or ``BadLine`` with a short reason (no input echoed)."""
    if b"\x00" in content:
        raise BadLine("NUL byte in line")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"invalid UTF-8 at byte {exc.start + 1} of the line") from None
    try:
        value = _DECODER.decode(text)
    except BadLine:
        raise
    except RecursionError:
        raise BadLine(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and ints over 4300 digits (plain ValueError)
        raise BadLine(f"invalid JSON: {_short(exc)}") from None
    if content.count(b"[") + content.count(b"{") > MAX_DEPTH and not _depth_ok(value):
        raise BadLine(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Duplicated):
        names = ", ".join(repr(k[:40]) for k in value.keys_repeated[:5])
        raise BadLine(f"duplicate key {names}: each key may appear once in a line")
    return value


def _short(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc).split(";")[0][:120]


def _request(value: Any, endpoint: str) -> tuple[str | None, dict[str, Any]]:
    """Check one decoded line; return its explicit custom_id (or None) and its body."""
    if not isinstance(value, dict):
        raise BadLine("not a JSON object")
    unknown = sorted(set(value) - ALLOWED_KEYS)
    if unknown:
        names = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise BadLine(f"unknown key(s) {names}; allowed: body, custom_id, method, params, url")
    if "body" in value and "params" in value:
        raise BadLine("both body and params: a request has one (params is Anthropic's name)")
    key = "params" if "params" in value else "body"
    if key not in value:
        raise BadLine("missing body")
    if not isinstance(value[key], dict):
        raise BadLine(f"{key} must be a JSON object")
    if "method" in value and value["method"] != "POST":
        raise BadLine('method must be "POST"')
    if "url" in value and value["url"] != endpoint:
        raise BadLine(f"url must be the route's endpoint {endpoint}")
    custom_id = value.get("custom_id")
    if custom_id is not None and not (
        isinstance(custom_id, str) and 0 < len(custom_id) <= MAX_CUSTOM_ID_CHARS
    ):
        raise BadLine(f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters")
    return custom_id, value[key]


def _decode_line(content: bytes) -> tuple[Any, bool]:
    """The line's value and whether orjson read it (``line_json``: only where it certainly
    agrees with ``_decode``, which reads every other line and says why one is invalid)."""
    if b"\x00" not in content:
        value = line_json.decode(content)
        deep = content.count(b"[") + content.count(b"{") > MAX_DEPTH
        if value is not None and not (deep and not _depth_ok(value)):
            return value, True
    return _decode(content), False


def parse_request(content: bytes, endpoint: str) -> tuple[str | None, dict[str, Any]]:
    """One line's explicit custom_id (or None) and body; ``BadLine`` says why it is invalid."""
    return _request(_decode_line(content)[0], endpoint)


def read_request(content: bytes, endpoint: str) -> tuple[str | None, dict[str, Any], bool]:
    """``parse_request``, and whether the body may be written by ``encode_request``'s fast
    encoder (pass the flag on)."""
    value, fast = _decode_line(content)
    return (*_request(value, endpoint), fast)


def encode_request(custom_id: str, body: object, fast: bool) -> bytes:
    """The request's normalized line: orjson for a body it decoded (``read_request``), else
    ``normalized_line``. The same line always gives the same bytes."""
    return line_json.encode(custom_id, body) if fast else normalized_line(custom_id, body)


def normalized_line(custom_id: str, body: object) -> bytes:
    """The neutral line written for each request (``providers.base.ChunkInput``; Mistral's
    input format too): compact JSON, keys in input order,
    UTF-8 (not ASCII-escaped), newline-terminated. ``ValueError`` if it cannot be encoded."""
    text = json.dumps(
        {"custom_id": custom_id, "body": body},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        raise ValueError("string with a lone surrogate escape (\\ud800-\\udfff)") from None


def custom_id_for_line(line_no: int) -> str:
    """The id given to a request without one: ``line-<n>``, ``n`` its 1-based line number."""
    return f"line-{line_no}"


def assign_custom_id(line_no: int, taken: set[str] | frozenset[str]) -> str:
    """``custom_id_for_line``, or the first of ``line-<n>-2``, ``-3``, ... not in ``taken``."""
    candidate = custom_id_for_line(line_no)
    suffix = 1
    while candidate in taken:
        suffix += 1
        candidate = f"{custom_id_for_line(line_no)}-{suffix}"
    return candidate


# ------------------------------------------------------------------------------ the file


class _Scan:
    """The state of one parse: problems, ids and sizes, in input order."""

    def __init__(self, endpoint: str, limits: FileLimits, *, keep: bool = False) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.kept: list[bytes] | None = [] if keep else None
        self.problems: list[Problem] = []
        self.truncated = False
        self.ids: list[str | None] = []
        self.first_line: dict[str, int] = {}
        self.lines: list[int] = []
        self.sizes: list[int] = []
        self.offsets = array("q")
        self.models: dict[str, tuple[int, int]] = {}

    def problem(self, line: int, reason: str) -> None:
        if len(self.problems) >= self.limits.max_problems:
            self.truncated = True
            raise _Stop
        self.problems.append(Problem(line, reason))

    def too_large(self) -> None:
        self.problem(0, f"file larger than {self.limits.max_file_bytes} bytes")
        raise _Stop

    def line(self, line: Line) -> None:
        if line.content is None:
            self.problem(line.number, f"line longer than {self.limits.max_line_bytes} bytes")
            return
        if _is_blank(line.content):
            return
        if len(self.lines) >= self.limits.max_lines:
            self.problem(line.number, f"more than {self.limits.max_lines} requests")
            raise _Stop
        try:
            custom_id, body, fast = read_request(line.content, self.endpoint)
            data = encode_request(custom_id or custom_id_for_line(line.number), body, fast)
        except (BadLine, ValueError) as exc:  # ValueError: normalized_line (NaN/inf, surrogates)
            self.problem(line.number, str(exc))
            return
        if self.request(line, custom_id, len(data)) and self.kept is not None:
            self.kept.append(data)
        self.model(body.get("model"), line.number)

    def model(self, name: object, line: int) -> None:
        if not isinstance(name, str):
            return
        count, first = self.models.get(name, (0, line))
        if count or len(self.models) < MAX_MODELS_TRACKED:
            self.models[name] = (count + 1, first)

    def request(self, line: Line, custom_id: str | None, size: int) -> bool:
        if custom_id is not None:
            first = self.first_line.setdefault(custom_id, line.number)
            if first != line.number:
                self.problem(line.number, f"duplicate custom_id {custom_id[:60]!r} (line {first})")
                return False
        self.ids.append(custom_id)
        self.lines.append(line.number)
        self.sizes.append(size)
        self.offsets.append(line.offset)
        return True

    def resolve_ids(self) -> tuple[list[str], list[int], int]:
        """Fill in assigned ids (never colliding with explicit ones); fix their line sizes."""
        taken = set(self.first_line)
        ids: list[str] = []
        sizes = list(self.sizes)
        for i, explicit in enumerate(self.ids):
            if explicit is not None:
                ids.append(explicit)
                continue
            assigned = assign_custom_id(self.lines[i], taken)
            taken.add(assigned)
            provisional = custom_id_for_line(self.lines[i])
            sizes[i] += len(assigned) - len(provisional)
            ids.append(assigned)
            if self.kept is not None and assigned != provisional:
                self.kept[i] = _with_id(self.kept[i], provisional, assigned)
        return ids, sizes, sum(1 for x in self.ids if x is None)


def _with_id(data: bytes, old: str, new: str) -> bytes:
    """A normalized line with its (assigned, plain ASCII) custom_id replaced: the line opens
    with ``{"custom_id":"<old>",`` (``normalized_line``)."""
    head = b'{"custom_id":"' + old.encode() + b'",'
    if not data.startswith(head):  # cannot happen: normalized_line writes the id first
        raise ValueError("normalized line does not open with its custom_id")
    return b'{"custom_id":"' + new.encode() + b'",' + data[len(head) :]


def parse_batch_file(
    path: Path,
    *,
    endpoint: str,
    limits: FileLimits,
    progress: Callable[[int], None] | None = None,
    keep_lines_up_to: int = 0,
) -> ParsedFile:
    """Validate ``path`` (streamed). ``IntakeRejected`` lists every problem, up to the cap.
    ``progress`` is called with the bytes read so far, about every MiB (``batchd submit``'s
    progress bar). A file of at most ``keep_lines_up_to`` bytes keeps its normalized lines in
    the result (``ParsedFile.normalized``), so that writing its chunks reads nothing again."""
    reported = 0
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        scan = _Scan(endpoint, limits, keep=size <= keep_lines_up_to)
        reader = _Counting(handle)
        with contextlib.suppress(_Stop):
            if size > limits.max_file_bytes:
                scan.too_large()
            for line in read_lines(reader, limits.max_line_bytes):
                if reader.count > limits.max_file_bytes:
                    scan.too_large()
                scan.line(line)
                if progress is not None and reader.count - reported >= PROGRESS_STEP_BYTES:
                    reported = reader.count
                    progress(reported)
    if not scan.lines and not scan.problems:
        scan.problems.append(Problem(0, "no requests: the file is empty or has only blank lines"))
    if scan.problems:
        raise IntakeRejected(scan.problems, truncated=scan.truncated)
    ids, sizes, assigned = scan.resolve_ids()
    return ParsedFile(
        sha256=reader.digest.hexdigest(),
        size_bytes=reader.count,
        request_count=len(ids),
        custom_ids=ids,
        line_numbers=scan.lines,
        normalized_sizes=sizes,
        assigned_ids=assigned,
        byte_offsets=scan.offsets,
        models=scan.models,
        normalized=scan.kept,
    )


def model_mismatch(route_model: str | None, models: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """What to warn about when lines name a model other than the route's (one job runs one
    model, so the route's answers them all); empty when they agree or the route names none."""
    others = {m: use for m, use in models.items() if m != route_model}
    if route_model is None or not others:
        return {}
    shown = sorted(others.items(), key=lambda item: item[1][1])[:5]
    return {
        "route_model": route_model,
        "line_models": {display_name(m)[:100]: count for m, (count, _) in shown},
        "requests": sum(count for count, _ in others.values()),
        "first_line": shown[0][1][1],
    }


def format_reason(exc: IntakeRejected, name: str) -> str:
    """The text of ``<name>.reason.txt``: a header, then one problem per line."""
    count = len(exc.problems)
    more = f" (scanning stopped after the first {count})" if exc.truncated else ""
    head = f"{display_name(name)}: rejected, {count} problem{'' if count == 1 else 's'}{more}"
    return "\n".join([head, *(str(problem) for problem in exc.problems)]) + "\n"
