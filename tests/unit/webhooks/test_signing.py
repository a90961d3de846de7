from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from batchd import __version__
from batchd.errors import WebhookError
from batchd.webhooks.signing import (
    build_headers,
    new_secret,
    parse_secret,
    sign,
    signature_header,
)

# The Standard Webhooks specification's published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_spec_test_vector():
    key = parse_secret(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_oracle_agrees_on_the_vector():
    stamp = datetime.fromtimestamp(VECTOR_TS, UTC)
    assert Webhook(VECTOR_SECRET).sign(VECTOR_ID, stamp, VECTOR_BODY.decode()) == VECTOR_SIGNATURE


def test_new_secret_is_whsec_and_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert first != second
    assert parse_secret(first) == base64.b64decode(first[6:])


def test_parse_secret_prefix_is_optional_and_padding_may_be_missing():
    key = parse_secret(VECTOR_SECRET)
    assert parse_secret(VECTOR_SECRET.removeprefix("whsec_")) == key
    raw = bytes(range(25))  # 25 bytes: base64 needs padding
    encoded = base64.b64encode(raw).decode()
    assert encoded.endswith("=")
    assert parse_secret("whsec_" + encoded.rstrip("=")) == raw


@pytest.mark.parametrize(
    "text",
    [
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        "whsec_not*base64!!",
        "whsec_",
        "",
    ],
)
def test_parse_secret_refuses_without_repeating_the_secret(text):
    with pytest.raises(WebhookError) as info:
        parse_secret(text)
    body = text.removeprefix("whsec_")
    if body:
        assert body not in str(info.value)


def test_a_dot_in_the_id_is_refused():
    with pytest.raises(WebhookError):
        sign(b"k" * 32, "evt.1", 1, b"{}")


def test_no_secret_is_refused():
    with pytest.raises(WebhookError):
        signature_header([], "evt_1", 1, b"{}")


def test_headers_verify_with_the_standardwebhooks_package():
    secret = new_secret()
    body = b'{"data":{"job_id":"job_1"},"timestamp":"2026-01-01T00:00:00Z","type":"batch.created"}'
    headers = build_headers([parse_secret(secret)], "evt_abc", int(time.time()), body)
    assert headers["webhook-id"] == "evt_abc"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"batchd/{__version__}"
    assert Webhook(secret).verify(body, headers)["type"] == "batch.created"


def test_during_a_rotation_each_secret_alone_verifies():
    old, new = new_secret(), new_secret()
    body = b'{"type":"batch.running"}'
    headers = build_headers([parse_secret(new), parse_secret(old)], "evt_r", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == {"type": "batch.running"}
    assert Webhook(new).verify(body, headers) == {"type": "batch.running"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_a_tampered_body_does_not_verify():
    secret = new_secret()
    headers = build_headers([parse_secret(secret)], "evt_t", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
