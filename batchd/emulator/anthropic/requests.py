"""What a create body must hold, and which params the Messages API would refuse.

The create call itself is refused (400) for a body that is not ``{"requests": [...]}`` with
1..100,000 items, an item that is not ``{"custom_id", "params"}``, a ``custom_id`` outside
``^[a-zA-Z0-9_-]{1,64}$`` or used twice. Params are checked later, as the real API does
asynchronously: a refused one becomes an ``errored`` result (``invalid_request_error``), never
a 400 on create.
"""

from __future__ import annotations

import re
from typing import Any

from batchd.emulator.anthropic.wire import invalid

MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
ROLES = frozenset({"user", "assistant"})


def check_create(body: object) -> list[dict[str, Any]]:
    """The requests of a create body, or raises ``AnthropicError`` 400 naming the problem."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    requests = body.get("requests")
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        raise invalid(f"{unknown[0]}: Extra inputs are not permitted")
    if not isinstance(requests, list):
        raise invalid("requests: Field required (a list of {custom_id, params})")
    if not 1 <= len(requests) <= MAX_REQUESTS:
        raise invalid(f"requests: must hold between 1 and {MAX_REQUESTS:,} items")
    seen: set[str] = set()
    for index, item in enumerate(requests):
        _check_item(index, item, seen)
    return requests


def _check_item(index: int, item: object, seen: set[str]) -> None:
    where = f"requests.{index}"
    if not isinstance(item, dict):
        raise invalid(f"{where}: Input should be an object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or CUSTOM_ID.fullmatch(custom_id) is None:
        raise invalid(f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
    if custom_id in seen:
        raise invalid(f"{where}.custom_id: Duplicate custom_id '{custom_id}' in the batch")
    seen.add(custom_id)
    if not isinstance(item.get("params"), dict):
        raise invalid(f"{where}.params: Field required (an object)")
    extra = sorted(set(item) - {"custom_id", "params"})
    if extra:
        raise invalid(f"{where}.{extra[0]}: Extra inputs are not permitted")


def param_problem(params: dict[str, Any]) -> str | None:
    """Why the Messages API would refuse these params (``None``: it would answer)."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required"
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return "max_tokens: Field required (an integer)"
    if max_tokens < 1:
        return "max_tokens: a value of 0 or less is not supported inside a batch"
    if params.get("stream"):
        return "stream: streaming is not supported inside a batch"
    return _messages_problem(params.get("messages"))


def _messages_problem(messages: object) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: Field required (at least one message)"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{index}.content: Field required"
    return None


def prompt_text(params: dict[str, Any]) -> str:
    """The text of the system prompt and the messages (for the echo and the token count)."""
    parts = [_text(params.get("system"))]
    parts.extend(_text(m.get("content")) for m in params.get("messages", []))
    return " ".join(p for p in parts if p)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""
