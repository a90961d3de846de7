"""Deterministic OpenAI response bodies, one per endpoint, with ``usage``.

A pure function of (endpoint, body): the same request gives the same bytes in every batch. Text
comes from the Mistral emulator's word list (one token per word), so ``usage`` agrees with the
content; a completion is as long as its ``max_tokens`` asks (at most 32,768 tokens).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

from batchd.emulator.openai.checks import MODERATION_MODEL, max_tokens
from batchd.emulator.outputs import MAX_COMPLETION_TOKENS, compose, request_digest

Body = Mapping[str, Any]
CREATED = 1_700_000_000
EMBEDDING_DIM = 64  # small, so that big embedding batches stay cheap to write
MODERATION_CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


def vector(text: str, dim: int) -> list[float]:
    """A deterministic vector of norm ~1 for ``text``."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dim)
    values = struct.unpack(f"<{dim}h", raw)
    scale = math.sqrt(3.0 / dim) / 32768.0
    return [round(v * scale, 6) for v in values]


def scores(text: str) -> dict[str, float]:
    raw = hashlib.shake_256(b"scores:" + text.encode()).digest(len(MODERATION_CATEGORIES))
    return {
        name: round((b / 255.0) ** 4, 6) for name, b in zip(MODERATION_CATEGORIES, raw, strict=True)
    }


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [c.get("text", "") for c in content if isinstance(c, dict)]
        return " ".join(str(p) for p in parts)
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else _text(v) for v in value]
    return []


def _length(body: Body) -> tuple[int, str]:
    asked = max_tokens(body)
    tokens = min(asked, MAX_COMPLETION_TOKENS)
    return tokens, "length" if tokens < asked or "max_tokens" in body else "stop"


def chat(body: Body, digest: bytes) -> dict[str, Any]:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    texts = [_text(m.get("content")) for m in messages]
    prompt_tokens = sum(_words(t) for t in texts) + 3 * len(messages)
    tokens, finish = _length(body)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": compose(texts[-1] if texts else "", tokens, digest),
        "refusal": None,
        "annotations": [],
    }
    return {
        "id": "chatcmpl-" + digest.hex()[:29],
        "object": "chat.completion",
        "created": CREATED,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(prompt_tokens, tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_" + digest.hex()[:10],
    }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def completions(body: Body, digest: bytes) -> dict[str, Any]:
    prompts = _inputs(body["prompt"]) or [""]
    tokens, finish = _length(body)
    choices = [
        {"text": compose(p, tokens, digest), "index": i, "logprobs": None, "finish_reason": finish}
        for i, p in enumerate(prompts)
    ]
    prompt_tokens = sum(_words(p) for p in prompts)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens * len(prompts),
        "total_tokens": prompt_tokens + tokens * len(prompts),
    }
    return {
        "id": "cmpl-" + digest.hex()[:29],
        "object": "text_completion",
        "created": CREATED,
        "model": body["model"],
        "choices": choices,
        "usage": usage,
    }


def responses(body: Body, digest: bytes) -> dict[str, Any]:
    inputs = _inputs(body["input"])
    tokens, _ = _length(body)
    prompt_tokens = sum(_words(t) for t in inputs)
    text = compose(inputs[-1] if inputs else "", tokens, digest)
    output = {
        "type": "message",
        "id": "msg_" + digest.hex()[:32],
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    usage = {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + tokens,
    }
    return {
        "id": "resp_" + digest.hex(),
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": body["model"],
        "output": [output],
        "usage": usage,
    }


def embeddings(body: Body, digest: bytes) -> dict[str, Any]:
    inputs = _inputs(body["input"])
    dim = body.get("dimensions")
    dim = dim if isinstance(dim, int) and 0 < dim <= 3072 else EMBEDDING_DIM
    data = [
        {"object": "embedding", "index": i, "embedding": vector(text, dim)}
        for i, text in enumerate(inputs)
    ]
    tokens = sum(_words(t) for t in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage}


def moderations(body: Body, digest: bytes) -> dict[str, Any]:
    results = []
    for text in _inputs(body["input"]):
        category_scores = scores(text)
        flags = {name: score > 0.5 for name, score in category_scores.items()}
        results.append(
            {
                "flagged": any(flags.values()),
                "categories": flags,
                "category_scores": category_scores,
            }
        )
    model = body.get("model") or MODERATION_MODEL
    return {"id": "modr-" + digest.hex()[:24], "model": model, "results": results}


_BUILDERS: dict[str, Callable[[Body, bytes], dict[str, Any]]] = {
    "/v1/chat/completions": chat,
    "/v1/completions": completions,
    "/v1/responses": responses,
    "/v1/embeddings": embeddings,
    "/v1/moderations": moderations,
}


def respond(endpoint: str, body: Body) -> tuple[bytes, dict[str, Any]]:
    """The request's digest (stable id material) and its response body."""
    digest = request_digest(endpoint, None, body)
    return digest, _BUILDERS[endpoint](body, digest)


def digest_of(endpoint: str, body: Body) -> bytes:
    return request_digest(endpoint, None, body)


def usage_tokens(endpoint: str, response: Mapping[str, Any]) -> tuple[int, int]:
    """``(input, output)`` tokens of one response, for the batch's ``usage``."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    if "input_tokens" in usage:
        return int(usage["input_tokens"]), int(usage["output_tokens"])
    return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
