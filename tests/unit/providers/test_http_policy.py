"""Retry policy as data: classification, backoff, Retry-After, error mapping, error bodies."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from multidict import CIMultiDict

from batchd.errors import (
    AuthError,
    NotFound,
    ProviderError,
    ProviderPermanent,
    ProviderTransient,
    RateLimited,
)
from batchd.providers.base import ProviderSettings
from batchd.providers.http_policy import (
    GONE_IS_DONE,
    NON_IDEMPOTENT,
    RateLimiter,
    Verdict,
    classify,
    error_for_exception,
    error_for_status,
    next_slot,
    parse_retry_after,
    provider_message,
    retry_delay,
    scrub,
)

SETTINGS = ProviderSettings(
    name="t", retry_base_s=0.5, retry_max_s=30.0, retry_after_max_s=300.0, read_retries=6
)
READS = ["get_job", "list_jobs", "get_file", "list_files", "download_file", "file_url"]


# ---------------------------------------------------------------------------- status table

STATUS_TABLE = [
    (400, ProviderPermanent),
    (401, AuthError),
    (403, AuthError),
    (404, NotFound),
    (405, ProviderPermanent),
    (408, ProviderTransient),
    (409, ProviderPermanent),
    (413, ProviderPermanent),
    (422, ProviderPermanent),
    (425, ProviderTransient),
    (429, RateLimited),
    (500, ProviderTransient),
    (501, ProviderTransient),
    (502, ProviderTransient),
    (503, ProviderTransient),
    (504, ProviderTransient),
    (599, ProviderTransient),
    (302, ProviderPermanent),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_TABLE)
def test_error_for_status_maps_every_class(status: int, kind: type[ProviderError]) -> None:
    err = error_for_status(status, "boom", where="get_job (GET /v1/batch/jobs/x)")
    assert type(err) is kind
    assert err.status == status


def test_retryable_status_with_retry_after_carries_the_delay() -> None:
    err = error_for_status(503, "later", retry_after_s=7.0)
    assert isinstance(err, RateLimited)
    assert (err.status, err.retry_after_s) == (503, 7.0)
    err429 = error_for_status(429, "slow down")
    assert isinstance(err429, RateLimited)
    assert err429.retry_after_s is None


def test_auth_errors_ignore_retry_after() -> None:
    assert type(error_for_status(401, "no", retry_after_s=3.0)) is AuthError


# ---------------------------------------------------------------------------- classify table


@pytest.mark.parametrize("op", [*READS, "cancel_job", "delete_job", "delete_file"])
@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_idempotent_operations_retry_transient_statuses(op: str, status: int) -> None:
    err = error_for_status(status, "x")
    assert classify(op, err, 0, 6) is Verdict.RETRY
    assert classify(op, err, 5, 6) is Verdict.RETRY
    assert classify(op, err, 6, 6) is Verdict.RAISE  # attempts exhausted


@pytest.mark.parametrize("op", sorted(NON_IDEMPOTENT))
@pytest.mark.parametrize(
    "err",
    [
        ProviderTransient("timed out"),
        RateLimited("429", retry_after_s=1.0),
        error_for_status(503, "x"),
        error_for_exception(aiohttp.ServerDisconnectedError()),
    ],
)
def test_upload_and_create_are_never_retried(op: str, err: ProviderError) -> None:
    assert classify(op, err, 0, 6) is Verdict.RAISE


def test_non_idempotent_set_is_exactly_upload_and_create() -> None:
    assert frozenset({"upload_file", "create_job"}) == NON_IDEMPOTENT


@pytest.mark.parametrize("op", [*READS, "cancel_job"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_permanent_statuses_are_raised_at_once(op: str, status: int) -> None:
    assert classify(op, error_for_status(status, "x"), 0, 6) is Verdict.RAISE


@pytest.mark.parametrize("op", sorted(GONE_IS_DONE))
def test_retried_delete_that_finds_nothing_is_done(op: str) -> None:
    gone = error_for_status(404, "no such thing")
    assert classify(op, gone, 0, 6) is Verdict.RAISE  # first attempt: really not found
    assert classify(op, gone, 1, 6) is Verdict.ABSORB  # an earlier attempt took effect


def test_not_found_on_retried_read_is_raised() -> None:
    assert classify("get_job", error_for_status(404, "x"), 2, 6) is Verdict.RAISE


def test_zero_retries_raises_transient_at_once() -> None:
    assert classify("get_job", ProviderTransient("x"), 0, 0) is Verdict.RAISE


# ---------------------------------------------------------------------------- exceptions


class _Conn:
    """Minimal ConnectionKey stand-in for ClientConnectorError's constructor."""

    host = "127.0.0.1"
    port = 1
    ssl = False


EXCEPTION_TABLE: list[tuple[BaseException, type[ProviderError]]] = [
    (TimeoutError(), ProviderTransient),
    (TimeoutError(), ProviderTransient),
    (aiohttp.SocketTimeoutError(), ProviderTransient),
    (aiohttp.ConnectionTimeoutError(), ProviderTransient),
    (aiohttp.ClientPayloadError("Response payload is not completed"), ProviderTransient),
    (aiohttp.ServerDisconnectedError(), ProviderTransient),
    (aiohttp.ClientConnectionResetError("reset"), ProviderTransient),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), ProviderTransient),
    (aiohttp.ClientConnectorError(_Conn(), OSError(111, "refused")), ProviderTransient),  # type: ignore[arg-type]
    (ConnectionResetError(), ProviderTransient),
    (aiohttp.InvalidURL("nope"), ProviderPermanent),
    (aiohttp.ClientError("odd"), ProviderTransient),
    (ValueError("odd"), ProviderTransient),
]


@pytest.mark.parametrize(("exc", "kind"), EXCEPTION_TABLE)
def test_error_for_exception(exc: BaseException, kind: type[ProviderError]) -> None:
    err = error_for_exception(exc, "get_job (GET /v1/batch/jobs/x)")
    assert type(err) is kind
    assert err.message.startswith("get_job (GET /v1/batch/jobs/x): ")


def test_client_response_error_is_classified_by_its_status() -> None:
    exc = aiohttp.ClientResponseError(None, (), status=503, message="Service Unavailable")  # type: ignore[arg-type]
    assert type(error_for_exception(exc)) is ProviderTransient
    exc = aiohttp.ClientResponseError(None, (), status=401, message="Unauthorized")  # type: ignore[arg-type]
    assert type(error_for_exception(exc)) is AuthError


# ---------------------------------------------------------------------------- delays


def test_backoff_grows_exponentially_within_jitter_and_caps() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        for _ in range(50):
            delay = retry_delay(attempt, None, SETTINGS, rng)
            assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_jittered() -> None:
    rng = random.Random(2)
    assert len({retry_delay(3, None, SETTINGS, rng) for _ in range(20)}) > 1


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert retry_delay(10_000, None, SETTINGS, random.Random(0)) <= 30.0


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(3)
    assert retry_delay(0, 12.0, SETTINGS, rng) == 12.0
    assert retry_delay(0, 0.0, SETTINGS, rng) <= 0.5


def test_retry_after_is_capped() -> None:
    assert retry_delay(0, 86_400.0, SETTINGS, random.Random(0)) == 300.0


def test_negative_retry_after_is_ignored() -> None:
    assert retry_delay(0, -5.0, SETTINGS, random.Random(0)) <= 0.5


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "5"}, 5.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        (
            {
                "Retry-After": format_datetime(
                    datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC), usegmt=True
                )
            },
            60.0,
        ),
        ({"Retry-After": "Fri, 02 Jan 2026 03:04:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "nan", "Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "bad", "Retry-After": "4"}, 4.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(CIMultiDict(headers), NOW) == expected


# ---------------------------------------------------------------------------- error bodies

BODY_TABLE = [
    # 401, Mistral
    (
        b'{"message":"Unauthorized","request_id":"c61f"}',
        "application/json; charset=utf-8",
        "Unauthorized",
    ),
    # 401, FastAPI style
    (b'{"detail":"Unauthorized"}', "application/json", "Unauthorized"),
    # 422 FastAPI validation list
    (
        json.dumps(
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "store"],
                        "msg": "Extra inputs are not permitted",
                        "input": False,
                    }
                ]
            }
        ).encode(),
        "application/json",
        "body.store: Extra inputs are not permitted",
    ),
    # 422 wrapped
    (
        json.dumps(
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "loc": ["body", "timeout_hours"],
                            "msg": "Input should be less than or equal to 168",
                        }
                    ]
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        ).encode(),
        "application/json",
        "body.timeout_hours: Input should be less than or equal to 168",
    ),
    # 400 object error
    (
        b'{"object":"error","message":"Assistant message must have content",'
        b'"type":"invalid_request_error","param":null,"code":null}',
        "application/json",
        "Assistant message must have content",
    ),
    # OpenAI-compatible
    (
        b'{"error":{"message":"bad file","type":"invalid_request_error"}}',
        "application/json",
        "bad file",
    ),
    # several validation items
    (
        b'{"detail":[{"loc":["query","page"],"msg":"bad"},{"loc":["body"],"msg":"worse"}]}',
        "application/json",
        "query.page: bad; body: worse",
    ),
    # plain text
    (
        b"upstream connect error\n or disconnect",
        "text/plain",
        "upstream connect error or disconnect",
    ),
    # JSON without a known key: shown as text
    (b'{"foo": 1}', "application/json", '{"foo": 1}'),
    # HTML: the reason phrase, never the page
    (
        b"<html><body><h1>502 Bad Gateway</h1>" + b"x" * 5000 + b"</body></html>",
        "text/html",
        "Bad Gateway",
    ),
    # empty body
    (b"", "application/json", "Bad Gateway"),
    # not JSON although declared
    (b"{nope", "application/json", "{nope"),
]


@pytest.mark.parametrize(("raw", "ctype", "expected"), BODY_TABLE)
def test_provider_message_understands_every_documented_shape(
    raw: bytes, ctype: str, expected: str
) -> None:
    assert provider_message(raw, ctype, "Bad Gateway") == expected


def test_provider_message_is_one_bounded_line() -> None:
    message = provider_message(b'{"message": "' + b"word\\n" * 500 + b'"}', "application/json")
    assert "\n" not in message
    assert len(message) <= 300


def test_scrub_removes_the_key() -> None:
    assert scrub("key sk-123456 is invalid", "sk-123456") == "key *** is invalid"
    assert scrub("nothing", None) == "nothing"


# ---------------------------------------------------------------------------- rate limit


def test_next_slot_spaces_requests() -> None:
    assert next_slot(10.0, 0.0, 0.25) == (10.0, 10.25)
    assert next_slot(10.05, 10.25, 0.25) == (10.25, 10.5)
    assert next_slot(11.0, 10.5, 0.25) == (11.0, 11.25)  # idle time is not banked


async def test_rate_limiter_spaces_concurrent_callers() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    limiter = RateLimiter(4.0, monotonic=lambda: now[0], sleep=sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert sorted(slept) == [0.25, 0.5, 0.75, 1.0]


async def test_rate_limiter_disabled_by_zero() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    limiter = RateLimiter(0.0, sleep=sleep)
    for _ in range(10):
        await limiter.acquire()
    assert limiter.interval_s == 0.0
