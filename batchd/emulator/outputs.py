"""Deterministic model outputs: the response body each endpoint would return.

Everything is a pure function of (endpoint, model, request body): the same request gives the
same bytes in every job and every run. Text is built from a fixed pseudo-random word list, one
token per word, so a completion with ``max_tokens=N`` has exactly N tokens and usage counts
agree with the content. ``created`` is a fixed epoch unless the caller passes another value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import secrets
import struct
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from batchd.emulator.requests import effective_model, ocr_pages
from batchd.emulator.schema_fill import fill_schema
from batchd.emulator.validation import Endpoint

STABLE_CREATED = 1_700_000_000
# No completion is longer than a model's context window; the emulator answers at most this many
# tokens (a conservative context size), finish_reason "length", so that a huge max_tokens cannot
# write hundreds of megabytes for one line.
MAX_COMPLETION_TOKENS = 32_768
ECHO_WORDS = 8
MODERATION_CATEGORIES = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
)
CLASSIFICATION_LABELS = ("positive", "negative", "neutral")

_VOCAB = (  # noqa: SIM905 - a sentence reads better than 170 quoted words
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has would more when "
    "if will about up out them so what its into than can only other some time could these two "
    "may first then do any like my now over such our man me even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three batch model answer result "
    "queue signal river stone light cloud paper garden window engine market silver thread "
    "harbor valley forest winter summer orbit ledger lantern meadow canyon"
).split()
_WORDS = 4096
_rng = random.Random(20240521)
_TEXT_WORDS = [_rng.choice(_VOCAB) for _ in range(_WORDS)]
_TEXT = " ".join(_TEXT_WORDS * 2)
_STARTS = array("q", [0])
for _word in _TEXT_WORDS * 2:
    _STARTS.append(_STARTS[-1] + len(_word) + 1)
del _rng, _word


def request_digest(endpoint: str, model: str | None, body: Mapping[str, Any]) -> bytes:
    canonical = json.dumps([endpoint, model, body], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


def filler(start: int, count: int) -> str:
    """``count`` words of the fixed text, starting at word ``start`` (wrapping around)."""
    if count <= 0:
        return ""
    start %= _WORDS
    full, rest = divmod(count, _WORDS)
    parts = [_TEXT[_STARTS[start] : _STARTS[start + _WORDS] - 1]] * full
    if rest:
        parts.append(_TEXT[_STARTS[start] : _STARTS[start + rest] - 1])
    return " ".join(parts)


def compose(prompt: str, tokens: int, digest: bytes) -> str:
    """A reply of exactly ``tokens`` words: an echo of the prompt, then filler."""
    echo = prompt.split()[: min(ECHO_WORDS, tokens)]
    rest = filler(int.from_bytes(digest[:4], "big"), tokens - len(echo))
    return " ".join([*echo, rest]) if rest else " ".join(echo)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def _count(text: str) -> int:
    return len(text.split())


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    total = prompt_tokens + completion_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


class Responder:
    """Builds response bodies; ``default_max_tokens`` and ``embedding_dim`` are settings."""

    def __init__(self, *, default_max_tokens: int, embedding_dim: int, created: int) -> None:
        self.default_max_tokens = default_max_tokens
        self.embedding_dim = embedding_dim
        self.created = created
        self._builders: dict[str, Callable[[str, Mapping[str, Any], bytes], dict[str, Any]]] = {
            Endpoint.CHAT: self.chat,
            Endpoint.FIM: self.fim,
            Endpoint.EMBEDDINGS: self.embeddings,
            Endpoint.MODERATIONS: self.moderations,
            Endpoint.CHAT_MODERATIONS: self.moderations,
            Endpoint.CLASSIFICATIONS: self.classifications,
            Endpoint.CHAT_CLASSIFICATIONS: self.classifications,
            Endpoint.OCR: self.ocr,
            Endpoint.CONVERSATIONS: self.conversation,
            Endpoint.TRANSCRIPTIONS: self.transcription,
        }

    def respond(
        self, endpoint: str, job_model: str | None, body: Mapping[str, Any]
    ) -> tuple[bytes, dict[str, Any]]:
        """The request's digest (stable id material) and the response body."""
        model = effective_model(body, job_model) or "mistral-medium-latest"
        digest = request_digest(endpoint, model, body)
        return digest, self._builders[endpoint](model, body, digest)

    # ------------------------------------------------------------ completions
    def _completion(
        self, model: str, prompt: str, prompt_tokens: int, body: Mapping[str, Any], digest: bytes
    ) -> dict[str, Any]:
        limit = body.get("max_tokens")
        tokens = limit if isinstance(limit, int) else self.default_max_tokens
        tokens = min(tokens, MAX_COMPLETION_TOKENS)  # a model stops at its context's end
        content = compose(prompt, max(tokens, 0), digest)  # exactly `tokens` words
        message = {"role": "assistant", "content": content, "tool_calls": None}
        return {
            "id": digest.hex(),
            "object": "chat.completion",
            "model": model,
            "usage": _usage(prompt_tokens, max(tokens, 0)),
            "created": self.created,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "length" if limit else "stop"}
            ],
        }

    def chat(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        messages = body["messages"]
        texts = [_text_of(m.get("content")) for m in messages]
        users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        prompt = users[-1] if users else texts[-1]
        prompt_tokens = sum(_count(t) for t in texts) + len(messages)
        return self._completion(model, prompt, prompt_tokens, body, digest)

    def fim(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        prompt = str(body["prompt"])
        suffix = body.get("suffix")
        prompt_tokens = _count(prompt) + (_count(suffix) if isinstance(suffix, str) else 0)
        return self._completion(model, prompt, prompt_tokens, body, digest)

    # ------------------------------------------------------------ vectors and scores
    def embeddings(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        """Vectors are inserted by ``render`` as raw JSON (formatting 1024 floats per input
        with ``json.dumps`` would be the bottleneck); the body holds placeholders."""
        inputs = _inputs(body.get("input"))
        dim = body.get("output_dimension")
        dim = dim if isinstance(dim, int) and 0 < dim <= 4096 else self.embedding_dim
        data = [
            {"object": "embedding", "embedding": RawJson(_vector_json(text, dim)), "index": i}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(_count(t) for t in inputs)
        usage = _usage(tokens, 0)
        return {"id": digest.hex(), "object": "list", "data": data, "model": model, "usage": usage}

    def moderations(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        results = []
        for text in _inputs(body.get("input")):
            scores = _scores(text, MODERATION_CATEGORIES, skew=4.0)
            flags = {name: score > 0.5 for name, score in scores.items()}
            results.append({"categories": flags, "category_scores": scores})
        return {"id": digest.hex(), "model": model, "results": results}

    def classifications(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        results = []
        for text in _inputs(body.get("input")):
            raw = _scores(text, CLASSIFICATION_LABELS, skew=1.0)
            total = sum(raw.values()) or 1.0
            scores = {label: round(v / total, 6) for label, v in raw.items()}
            results.append({"sentiment": {"scores": scores}})
        return {"id": digest.hex(), "model": model, "results": results}

    # ------------------------------------------------------------ other endpoints
    def ocr(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        """One page object per page asked for (``pages``; the first page when not given), and
        a ``document_annotation`` that fits ``document_annotation_format`` when one is given."""
        seed = int.from_bytes(digest[:4], "big")
        pages = [
            {
                "index": index,
                "markdown": f"# Emulated page {index}\n\n" + filler(seed + index, 40),
                "images": [],
                "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
            }
            for index in ocr_pages(body.get("pages"))
        ]
        usage = {"pages_processed": len(pages), "doc_size_bytes": None}
        annotation = _annotation(body.get("document_annotation_format"), seed)
        return {
            "pages": pages,
            "model": model,
            "document_annotation": annotation,
            "usage_info": usage,
        }

    def conversation(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        inputs = body["inputs"]
        prompt = (
            inputs
            if isinstance(inputs, str)
            else " ".join(_text_of(e.get("content")) for e in inputs if isinstance(e, dict))
        )
        completion = self._completion(model, prompt, _count(prompt), {}, digest)
        content = completion["choices"][0]["message"]["content"]
        entry = {
            "object": "entry",
            "type": "message.output",
            "role": "assistant",
            "content": content,
            "model": model,
            "id": "msg_" + digest.hex(),
        }
        return {
            "object": "conversation.response",
            "conversation_id": "conv_" + digest.hex(),
            "outputs": [entry],
            "usage": completion["usage"],
        }

    def transcription(self, model: str, body: Mapping[str, Any], digest: bytes) -> dict[str, Any]:
        text = filler(int.from_bytes(digest[:4], "big"), self.default_max_tokens)
        usage = {"prompt_audio_seconds": 10, **_usage(0, _count(text))}
        return {"model": model, "text": text, "language": None, "segments": [], "usage": usage}


def _annotation(response_format: object, seed: int) -> str | None:
    """The document annotation, a JSON string in the requested format (``None``: no format, or
    ``text``)."""
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type", "text")
    if kind == "json_object":
        return json.dumps({"summary": filler(seed, 12)})
    if kind != "json_schema":
        return None
    schema = response_format["json_schema"]["schema"]
    value = fill_schema(schema, seed, filler)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [" ".join(_text_of(m.get("content")) for m in conv) for conv in value]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [" ".join(_text_of(m.get("content")) for m in value)]
    return [str(v) for v in value] if isinstance(value, list) else []


@functools.lru_cache(maxsize=8)
def _component_table(dim: int) -> list[str]:
    """Six-decimal text of every int16 component, scaled so vectors have norm ~1."""
    scale = math.sqrt(3.0 / dim) / 32768.0
    return [f"{v * scale:.6f}" for v in range(-32768, 32768)]


def _vector_json(text: str, dim: int) -> str:
    values = struct.unpack(f"<{dim}h", hashlib.shake_256(text.encode()).digest(2 * dim))
    table = _component_table(dim)
    return "[" + ",".join([table[v + 32768] for v in values]) + "]"


class RawJson(str):
    """Text that ``render`` inserts verbatim as a JSON value."""

    __slots__ = ()


_NONCE = secrets.token_hex(8)  # placeholders no request can forge
RAW_ENDPOINTS = frozenset({Endpoint.EMBEDDINGS})


def render(obj: object) -> str:
    """Compact JSON of ``obj``, with every ``RawJson`` value inserted verbatim."""
    raws: list[str] = []

    def swap(value: object) -> object:
        if isinstance(value, RawJson):
            raws.append(value)
            return f"@@{_NONCE}:{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(obj), separators=(",", ":"), ensure_ascii=False)
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@{_NONCE}:{index}@@"', raw, 1)
    return text


def _scores(text: str, names: tuple[str, ...], *, skew: float) -> dict[str, float]:
    raw = hashlib.shake_256(b"scores:" + text.encode()).digest(len(names))
    return {name: round((b / 255.0) ** skew, 6) for name, b in zip(names, raw, strict=True)}
