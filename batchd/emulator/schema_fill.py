"""A JSON value that fits a JSON Schema: the emulator's OCR ``document_annotation`` when a
request gives a ``document_annotation_format`` of type ``json_schema`` (the real API answers
with a JSON string in that format).

Pure and deterministic (a function of the schema and a seed) and small: objects get every
property while shallow (only the required ones deeper down), arrays their minimum length (at
least one item where allowed). It covers what SDK-generated schemas use (pydantic's
``model_json_schema`` through ``response_format_from_pydantic_model``): ``type`` (also a list),
``properties``/``required``, ``items``/``prefixItems``, ``minItems``/``maxItems``, ``enum``,
``const``, ``anyOf``/``oneOf``/``allOf``, local ``$ref`` (``#/$defs/...``,
``#/definitions/...``), string lengths and formats (date, date-time, time, email, uri, uuid),
number bounds (inclusive and exclusive) and integer ``multipleOf``. A ``pattern`` is honoured
when one of a few simple candidates matches it. Recursive schemas stop after ``MAX_DEPTH``
levels with the emptiest value that fits. Hostile schemas stay cheap: at most ``MAX_NODES``
values, ``MAX_ITEMS`` items per array and ``MAX_CHARS`` per string (the value may then not fit),
and ``null`` past ``HARD_DEPTH`` (a ``$ref`` loop).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Text = Callable[[int, int], str]  # (seed, words) -> that many words

MAX_DEPTH = 6
HARD_DEPTH = 48
MAX_NODES = 10_000
MAX_ITEMS = 1_000
MAX_CHARS = 10_000
_FORMATS = {
    "date": "2024-05-21",
    "date-time": "2024-05-21T12:00:00Z",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_PATTERN_CANDIDATES = ("a", "A", "0", "abc", "ABC", "123", "a1", "x-1", "a_b", "")


class SchemaFiller:
    def __init__(self, root: Mapping[str, Any], seed: int, text: Text) -> None:
        self._root = root
        self._seed = seed
        self._words = text
        self._nodes_left = MAX_NODES

    def fill(self) -> Any:
        return self._value(self._root, "", 0)

    # ------------------------------------------------------------------ dispatch
    def _value(self, schema: object, path: str, depth: int) -> Any:
        self._nodes_left -= 1
        if self._nodes_left < 0 or depth > HARD_DEPTH:
            return None
        if not isinstance(schema, Mapping):
            return None if schema is False else self._text(path, 3)  # true: anything fits
        if "$ref" in schema:
            return self._value(self._resolve(schema["$ref"]), path, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self._pick(path, len(enum))]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self._value(self._choose(options, depth), path, depth + 1)
        if isinstance(schema.get("allOf"), list):
            return self._value(self._merge(schema), path, depth + 1)
        return self._typed(schema, self._type(schema, depth), path, depth)

    def _typed(self, schema: Mapping[str, Any], kind: str, path: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, path, depth)
        if kind == "array":
            return self._array(schema, path, depth)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            return self._pick(path, 2) == 1
        if kind == "null":
            return None
        return self._string(schema, path)

    def _type(self, schema: Mapping[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            named = [k for k in kind if isinstance(k, str)]
            if depth >= MAX_DEPTH and "null" in named:
                return "null"
            return next((k for k in named if k != "null"), "null")
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        return "array" if "items" in schema or "prefixItems" in schema else "string"

    # ------------------------------------------------------------------ composition
    def _resolve(self, ref: object) -> object:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node: object = self._root
        for part in ref.lstrip("#").strip("/").split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            if key:
                node = node.get(key, {}) if isinstance(node, Mapping) else {}
        return node

    def _choose(self, options: list[Any], depth: int) -> object:
        """The first option that is not ``null`` (deep down: ``null`` if allowed)."""
        nulls = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
        if depth >= MAX_DEPTH and nulls:
            return nulls[0]
        return next((o for o in options if o not in nulls), options[0])

    def _merge(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``allOf``: the parts' keys together (properties and required lists combined)."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping) and "$ref" in part:
                part = self._resolve(part["$ref"])  # noqa: PLW2901
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties" and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                elif key == "required" and isinstance(merged.get(key), list):
                    merged[key] = [*merged[key], *value]
                else:
                    merged.setdefault(key, value)
        return merged

    # ------------------------------------------------------------------ containers
    def _object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        names = list(properties) if depth < MAX_DEPTH else [n for n in properties if n in required]
        names += [r for r in required if r not in names]
        return {
            name: self._value(properties.get(name, {}), f"{path}/{name}", depth + 1)
            for name in names
        }

    def _array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = _int(schema.get("minItems"), 0)
        count = max(low if depth >= MAX_DEPTH else max(low, 1), len(prefix))
        high = _int(schema.get("maxItems"), None)
        count = min(count, MAX_ITEMS if high is None else high, MAX_ITEMS)
        items = schema.get("items", {})
        return [
            self._value(prefix[i] if i < len(prefix) else items, f"{path}/{i}", depth + 1)
            for i in range(count)
        ]

    # ------------------------------------------------------------------ scalars
    def _string(self, schema: Mapping[str, Any], path: str) -> str:
        fmt = schema.get("format")
        text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
        if not text:
            text = self._text(path, 3)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = _matching(pattern, text)
        low = min(_int(schema.get("minLength"), 0), MAX_CHARS)
        high = _int(schema.get("maxLength"), None)
        if len(text) < low:
            text += "x" * (low - len(text))
        return text if high is None else text[:high]

    def _integer(self, schema: Mapping[str, Any], path: str) -> int:
        (low, low_open), (high, high_open) = _bound(schema, "minimum"), _bound(schema, "maximum")
        first = 0 if low is None else math.floor(low) + 1 if low_open else math.ceil(low)
        if high is None:
            last = first + 100
        else:
            last = math.ceil(high) - 1 if high_open else math.floor(high)
            first = min(first, last) if low is None else first
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            return math.ceil(first / step) * step
        return first + self._pick(path, max(last - first + 1, 1))

    def _number(self, schema: Mapping[str, Any], path: str) -> float:
        (low, _), (high, _) = _bound(schema, "minimum"), _bound(schema, "maximum")
        low = low if low is not None else (high - 100.0 if high is not None else 0.0)
        high = high if high is not None else low + 100.0
        share = (self._pick(path, 999) + 1) / 1000.0  # strictly inside: fits exclusive bounds
        return round(low + (high - low) * share, 6) if high > low else low

    # ------------------------------------------------------------------ seeded choices
    def _digest(self, path: str) -> int:
        raw = hashlib.blake2b(f"{self._seed}:{path}".encode(), digest_size=8).digest()
        return int.from_bytes(raw, "big")

    def _pick(self, path: str, n: int) -> int:
        return self._digest(path) % n

    def _text(self, path: str, words: int) -> str:
        return self._words(self._digest(path), words)


def _int(value: object, default: int | None) -> Any:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def _number_at(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _bound(schema: Mapping[str, Any], key: str) -> tuple[float | None, bool]:
    """The tighter of ``minimum``/``exclusiveMinimum`` (or the maxima), and whether it is
    exclusive."""
    inclusive = _number_at(schema, key)
    exclusive = _number_at(schema, "exclusive" + key[0].upper() + key[1:])
    if exclusive is None:
        return inclusive, False
    if inclusive is None:
        return exclusive, True
    tighter = exclusive >= inclusive if key == "minimum" else exclusive <= inclusive
    return (exclusive, True) if tighter else (inclusive, False)


def _matching(pattern: str, text: str) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error:
        return text
    for candidate in (text, *_PATTERN_CANDIDATES):
        if compiled.search(candidate):
            return candidate
    return text


def fill_schema(schema: Mapping[str, Any], seed: int, text: Text) -> Any:
    """A value fitting ``schema``; ``text(seed, n)`` gives ``n`` words for strings."""
    return SchemaFiller(schema, seed, text).fill()
