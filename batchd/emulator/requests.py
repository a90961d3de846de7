"""Per-request validation: is this body acceptable for this endpoint?

A body the real endpoint would refuse becomes a per-request error line, never a failed job.
Schema problems give the wrapped 422 seen from api.mistral.ai (``{"object":"error","message":
{"detail":[...]},...}``); semantic problems give 400 with the real messages where known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchd.emulator.validation import Endpoint
from batchd.emulator.wire import detail_item, object_error

ROLES = frozenset({"system", "user", "assistant", "tool"})
Body = Mapping[str, Any]
MAX_OCR_PAGES = 1_000  # pages one OCR request may ask for


@dataclass(frozen=True)
class RequestError:
    status: int
    body: dict[str, Any]
    message: str


def _schema(type_: str, field: str, msg: str, value: object) -> RequestError:
    item = detail_item(type_, ["body", field], msg, value)
    body = object_error({"detail": [item]})
    return RequestError(422, body, f"{field}: {msg}")


def _missing(field: str, body: Body) -> RequestError:
    return _schema("missing", field, "Field required", dict(body))


def _semantic(message: str) -> RequestError:
    return RequestError(400, object_error(message), message)


def effective_model(body: Body, job_model: str | None) -> str | None:
    """The model that answers: the job's when it names one (a batch uses one model, whatever
    its bodies say, as the real API does for Mistral's own inline example), else the body's."""
    if job_model:
        return job_model
    model = body.get("model")
    return model if isinstance(model, str) and model else None


def check(endpoint: str, job_model: str | None, body: Body) -> RequestError | None:
    """``None`` when the request would succeed, else the error the endpoint would answer."""
    model_error = _check_model(endpoint, job_model, body)
    if model_error is not None:
        return model_error
    checker = _CHECKS.get(endpoint, _no_check)
    return checker(body)


def _check_model(endpoint: str, job_model: str | None, body: Body) -> RequestError | None:
    body_model = body.get("model")
    if body_model is not None and not isinstance(body_model, str):
        return _schema("string_type", "model", "Input should be a valid string", body_model)
    needs_model = endpoint not in {Endpoint.CONVERSATIONS, Endpoint.OCR}
    if needs_model and effective_model(body, job_model) is None:
        return _missing("model", body)
    return None


def _no_check(body: Body) -> RequestError | None:
    return None


def _check_chat(body: Body) -> RequestError | None:
    messages = body.get("messages")
    if messages is None:
        return _missing("messages", body)
    if not isinstance(messages, list):
        return _schema("list_type", "messages", "Input should be a valid list", messages)
    if not messages:
        msg = "List should have at least 1 item after validation, not 0"
        return _schema("too_short", "messages", msg, messages)
    for message in messages:
        problem = _check_message(message)
        if problem is not None:
            return problem
    return _check_last_role(messages[-1]) or _check_max_tokens(body)


def _check_message(message: object) -> RequestError | None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        msg = "Input tag does not match any of the expected tags: 'assistant', 'system', " + (
            "'tool', 'user'"
        )
        return _schema("union_tag_invalid", "messages", msg, message)
    if (
        message["role"] == "assistant"
        and not message.get("content")
        and not message.get("tool_calls")
    ):
        return _semantic("Assistant message must have either content or tool_calls, but not none.")
    return None


def _check_last_role(last: Mapping[str, Any]) -> RequestError | None:
    role = last["role"]
    if role in {"user", "tool"} or (role == "assistant" and last.get("prefix") is True):
        return None
    return _semantic(
        "Expected last role User or Tool (or Assistant with prefix True) for serving "
        f"but got {role}"
    )


def _check_max_tokens(body: Body) -> RequestError | None:
    value = body.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return _schema("int_type", "max_tokens", "Input should be a valid integer", value)
    if value < 0:
        msg = "Input should be greater than or equal to 0"
        return _schema("greater_than_equal", "max_tokens", msg, value)
    return None


def _check_fim(body: Body) -> RequestError | None:
    prompt = body.get("prompt")
    if prompt is None:
        return _missing("prompt", body)
    if not isinstance(prompt, str):
        return _schema("string_type", "prompt", "Input should be a valid string", prompt)
    return _check_max_tokens(body)


def _check_text_inputs(body: Body) -> RequestError | None:
    value = body.get("input")
    if value is None:
        return _missing("input", body)
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    msg = "Input should be a valid string or a non-empty list of strings"
    return _schema("string_type", "input", msg, value)


def _check_chat_inputs(body: Body) -> RequestError | None:
    value = body.get("input")
    if value is None:
        return _missing("input", body)
    if not isinstance(value, list) or not value:
        return _schema("list_type", "input", "Input should be a valid list", value)
    conversations = value if isinstance(value[0], list) else [value]
    for conversation in conversations:
        if not isinstance(conversation, list) or not conversation:
            return _schema("list_type", "input", "Input should be a valid list", conversation)
        for message in conversation:
            problem = _check_message(message)
            if problem is not None:
                return problem
    return None


def _check_ocr(body: Body) -> RequestError | None:
    document = body.get("document")
    if document is None:
        return _missing("document", body)
    if not isinstance(document, dict):
        return _schema("model_type", "document", "Input should be a valid dictionary", document)
    try:
        ocr_pages(body.get("pages"))
    except ValueError as exc:
        return _schema("value_error", "pages", f"Value error, {exc}", body.get("pages"))
    return _check_annotation_format(body.get("document_annotation_format"))


def ocr_pages(value: object) -> list[int]:
    """The page indexes an OCR request asks for, sorted and unique: a list of integers from 0,
    or a string of numbers and ranges (``"0,2-4"``); none given: the first page only. Raises
    ``ValueError`` saying what is wrong."""
    if value is None:
        return [0]
    if isinstance(value, str):
        pages = _page_ranges(value)
    elif isinstance(value, list) and all(_is_index(v) for v in value):
        pages = set(value)
    else:
        raise ValueError("pages must be a list of page indexes (from 0) or a string like '0,2-4'")
    if not pages:
        raise ValueError("pages must name at least one page")
    if len(pages) > MAX_OCR_PAGES:
        raise ValueError(f"at most {MAX_OCR_PAGES} pages can be processed in one request")
    return sorted(pages)


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_RANGE = re.compile(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?")


def _page_ranges(text: str) -> set[int]:
    pages: set[int] = set()
    for part in text.split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise ValueError(f"invalid page range {part.strip()!r} (use '0,2-4')")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high < low or high - low >= MAX_OCR_PAGES:
            raise ValueError(f"invalid page range {part.strip()!r}")
        pages.update(range(low, high + 1))
        if len(pages) > MAX_OCR_PAGES:
            break
    return pages


def _check_annotation_format(value: object) -> RequestError | None:
    """``document_annotation_format``: a ResponseFormat; ``json_schema`` needs its schema."""
    if value is None:
        return None
    field = "document_annotation_format"
    if not isinstance(value, dict):
        return _schema("model_type", field, "Input should be a valid dictionary", value)
    kind = value.get("type", "text")
    if kind not in {"text", "json_object", "json_schema"}:
        msg = "Input should be 'text', 'json_object' or 'json_schema'"
        return _schema("enum", f"{field}.type", msg, kind)
    spec = value.get("json_schema")
    if kind == "json_schema" and not (
        isinstance(spec, dict) and isinstance(spec.get("schema"), dict)
    ):
        return _missing(f"{field}.json_schema.schema", value)
    return None


def _check_conversation(body: Body) -> RequestError | None:
    inputs = body.get("inputs")
    if inputs is None:
        return _missing("inputs", body)
    if not isinstance(inputs, str | list):
        return _schema("string_type", "inputs", "Input should be a valid string", inputs)
    return None


def _check_transcription(body: Body) -> RequestError | None:
    if not body.get("file_url") and not body.get("file_id"):
        return _semantic("One of file, file_url or file_id must be provided")
    return None


_CHECKS: dict[str, Callable[[Body], RequestError | None]] = {
    Endpoint.CHAT: _check_chat,
    Endpoint.FIM: _check_fim,
    Endpoint.EMBEDDINGS: _check_text_inputs,
    Endpoint.MODERATIONS: _check_text_inputs,
    Endpoint.CLASSIFICATIONS: _check_text_inputs,
    Endpoint.CHAT_MODERATIONS: _check_chat_inputs,
    Endpoint.CHAT_CLASSIFICATIONS: _check_chat_inputs,
    Endpoint.OCR: _check_ocr,
    Endpoint.CONVERSATIONS: _check_conversation,
    Endpoint.TRANSCRIPTIONS: _check_transcription,
}
