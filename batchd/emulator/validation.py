"""Request validation with FastAPI's rules and error format (the real API is a FastAPI app).

Query strings, form fields, path ids and JSON bodies are validated by pydantic models; a
failure becomes ``422 {"detail":[...]}`` with ``loc`` prefixed by ``query``/``body``/``path``,
exactly as FastAPI renders ``RequestValidationError`` (no ``url``; exceptions in ``ctx``
rendered as ``{}``). Scalar query parameters take the last value when repeated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from multidict import MultiMapping
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from batchd.emulator.wire import ApiError, detail_item, validation_error


class Endpoint(StrEnum):
    CHAT = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    FIM = "/v1/fim/completions"
    MODERATIONS = "/v1/moderations"
    CHAT_MODERATIONS = "/v1/chat/moderations"
    OCR = "/v1/ocr"
    CLASSIFICATIONS = "/v1/classifications"
    CHAT_CLASSIFICATIONS = "/v1/chat/classifications"
    CONVERSATIONS = "/v1/conversations"
    TRANSCRIPTIONS = "/v1/audio/transcriptions"


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEOUT_EXCEEDED = "TIMEOUT_EXCEEDED"
    CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
    CANCELLED = "CANCELLED"


class OrderBy(StrEnum):
    CREATED = "created"
    NEWEST = "-created"


class Purpose(StrEnum):
    FINE_TUNE = "fine-tune"
    BATCH = "batch"
    OCR = "ocr"
    AGENTIC_SAFETY = "agentic_safety"


class SampleType(StrEnum):
    PRETRAIN = "pretrain"
    INSTRUCT = "instruct"
    BATCH_REQUEST = "batch_request"
    BATCH_RESULT = "batch_result"
    BATCH_ERROR = "batch_error"


class Source(StrEnum):
    UPLOAD = "upload"
    REPOSITORY = "repository"
    MISTRAL = "mistral"


MAX_INLINE_REQUESTS = 10_000
MAX_QUERY_INT = 2**31 - 1  # page numbers and sizes: a negative or 30-digit value is a 422
Page = Annotated[int, Field(ge=0, le=MAX_QUERY_INT)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]
MetadataValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequestIn(_Strict):
    custom_id: str | None = None
    body: dict[str, Any]


class CreateJobIn(_Strict):
    input_files: list[UUID] | None = None
    requests: Annotated[list[BatchRequestIn], Field(max_length=MAX_INLINE_REQUESTS)] | None = None
    endpoint: Endpoint
    model: str | None = None
    agent_id: str | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None
    timeout_hours: Annotated[int, Field(ge=1, le=168)] = 24

    @model_validator(mode="after")
    def _one_source(self) -> CreateJobIn:
        if bool(self.input_files) == bool(self.requests):
            raise ValueError("Exactly one of input_files or requests must be provided")
        return self


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobsQuery(_Query):
    page: Page = 0
    page_size: Page = 100
    model: str | None = None
    agent_id: str | None = None
    created_after: datetime | None = None
    created_by_me: bool = False
    status: list[JobStatus] | None = None
    order_by: OrderBy = OrderBy.NEWEST


JOBS_QUERY_KEYS = frozenset({*JobsQuery.model_fields, "metadata"})


class FilesQuery(_Query):
    page: Page = 0
    page_size: Page = 100
    include_total: bool = True
    sample_type: list[SampleType] | None = None
    source: list[Source] | None = None
    search: str | None = None
    purpose: Purpose | None = None
    mimetypes: list[str] | None = None


class JobQuery(_Query):
    inline: bool | None = None


class SignedUrlQuery(_Query):
    expiry: Annotated[int, Field(ge=1, le=168)] = 24


class UploadForm(_Query):
    purpose: Purpose = Purpose.FINE_TUNE
    visibility: Literal["workspace", "user"] = "workspace"
    expiry: int | None = None


M = TypeVar("M", bound=BaseModel)
_LIST_PARAMS = frozenset({"status", "sample_type", "source", "mimetypes"})
_UUID = TypeAdapter(UUID)


def _jsonable_ctx(ctx: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in ctx.items():
        if isinstance(value, BaseException):
            out[key] = {}
        elif isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


def fastapi_detail(exc: ValidationError, *prefix: str) -> list[dict[str, Any]]:
    items = []
    for err in exc.errors(include_url=False):
        ctx = _jsonable_ctx(err["ctx"]) if "ctx" in err else None
        loc = [*prefix, *err["loc"]]
        items.append(detail_item(err["type"], loc, err["msg"], err["input"], ctx))
    return items


def validate(model: type[M], data: object, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(fastapi_detail(exc, prefix)) from exc


def query_input(query: MultiMapping[str], model: type[BaseModel]) -> dict[str, Any]:
    """Scalars take the last value; list fields collect every value."""
    data: dict[str, Any] = {}
    for name in model.model_fields:
        values = query.getall(name, [])
        if values:
            data[name] = list(values) if name in _LIST_PARAMS else values[-1]
    return data


def validate_query(query: MultiMapping[str], model: type[M]) -> M:
    return validate(model, query_input(query, model), "query")


def validate_path_id(name: str, value: str, status_on_error: int) -> str:
    try:
        return str(_UUID.validate_python(value))
    except ValidationError as exc:
        if status_on_error == 404:
            raise ApiError(404, {"detail": "Not Found"}) from exc
        raise validation_error(fastapi_detail(exc, "path", name)) from exc


def parse_json_body(raw: bytes) -> object:
    """FastAPI's body parsing: empty -> missing; malformed (or nested deeper than the parser
    goes) -> json_invalid at the position."""
    if not raw.strip():
        raise validation_error([detail_item("missing", ["body"], "Field required", None)])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _json_invalid(exc.pos, exc.msg) from exc
    except UnicodeDecodeError as exc:
        raise _json_invalid(0, "invalid utf-8") from exc
    except RecursionError as exc:
        raise _json_invalid(0, "nested too deeply") from exc


def _json_invalid(pos: int, message: str) -> ApiError:
    item = detail_item("json_invalid", ["body", pos], "JSON decode error", {}, {"error": message})
    return validation_error([item])


def metadata_filter(query: MultiMapping[str]) -> dict[str, str]:
    """The jobs-list metadata filter: ``metadata=<json object>`` and/or exploded top-level keys
    (what the official SDK sends: every key that is not a known parameter)."""
    wanted: dict[str, str] = {}
    raw = query.getall("metadata", [])
    if raw:
        wanted.update(_metadata_json(raw[-1]))
    wanted.update((k, v) for k, v in query.items() if k not in JOBS_QUERY_KEYS)
    return wanted


def _metadata_json(raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        item = detail_item("json_invalid", ["query", "metadata"], "JSON decode error", raw)
        raise validation_error([item]) from exc
    if not isinstance(value, dict):
        msg = "Input should be a valid dictionary"
        raise validation_error([detail_item("dict_type", ["query", "metadata"], msg, value)])
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
