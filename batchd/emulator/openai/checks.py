"""Per-request validation of a batch line's ``body``: what the endpoint would answer 400 to.

A refused body becomes a line of the error file (``response.status_code`` 400 and OpenAI's
error object in ``response.body``), never a failed batch. The checks are the common ones
(a model, the endpoint's required input, numbers in range), not the whole API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchd.emulator.openai.wire import error_body

Body = Mapping[str, Any]
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
DEFAULT_MAX_TOKENS = 16
MODERATION_MODEL = "omni-moderation-latest"


@dataclass(frozen=True)
class RequestError:
    status: int
    body: dict[str, Any]


def _invalid(message: str, param: str | None, code: str | None = None) -> RequestError:
    return RequestError(400, error_body(message, param=param, code=code))


def _missing(param: str) -> RequestError:
    return _invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def check(endpoint: str, body: Body) -> RequestError | None:
    """``None`` when the request would succeed, else the endpoint's error."""
    model = body.get("model")
    if endpoint != "/v1/moderations" and not (isinstance(model, str) and model):
        return _invalid("you must provide a model parameter", "model")
    checker = _CHECKS.get(endpoint)
    problem = checker(body) if checker is not None else None
    return problem or _check_max_tokens(body)


def _check_chat(body: Body) -> RequestError | None:
    messages = body.get("messages")
    if messages is None:
        return _missing("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("Invalid 'messages': expected a non-empty array.", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return _invalid(f"Invalid value for 'messages[{index}].role'.", f"messages[{index}]")
    return None


def _check_input(body: Body) -> RequestError | None:
    value = body.get("input")
    if value is None:
        return _missing("input")
    if isinstance(value, str) or (isinstance(value, list) and value):
        return None
    return _invalid("Invalid 'input': expected a string or a non-empty array.", "input")


def _check_prompt(body: Body) -> RequestError | None:
    value = body.get("prompt")
    if value is None:
        return _missing("prompt")
    if isinstance(value, str | list):
        return None
    return _invalid("Invalid 'prompt': expected a string or an array.", "prompt")


def _check_max_tokens(body: Body) -> RequestError | None:
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return _invalid(f"Invalid '{name}': integer below minimum value 1.", name)
    return None


_CHECKS: dict[str, Callable[[Body], RequestError | None]] = {
    "/v1/chat/completions": _check_chat,
    "/v1/embeddings": _check_input,
    "/v1/moderations": _check_input,
    "/v1/responses": _check_input,
    "/v1/completions": _check_prompt,
}


def max_tokens(body: Body) -> int:
    """The completion length a request asks for (the emulator's default when it sets none)."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_MAX_TOKENS


def token_estimate(body: Body) -> int:
    """Tokens a request enqueues: its JSON length / 4 plus the completion it asks for (what the
    enqueued-token limit counts)."""
    return len(json.dumps(body, separators=(",", ":"))) // 4 + max_tokens(body)
