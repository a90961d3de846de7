"""Standard Webhooks signatures (symmetric ``v1``: HMAC-SHA256), stdlib only.

The signed content is ``{msg_id}.{timestamp}.{body}`` over the exact body bytes sent. During a
secret rotation every configured secret signs, and ``webhook-signature`` lists them all,
space-separated; a receiver accepts the request when any one of them matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Final

from batchd import __version__
from batchd.errors import WebhookError

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a prefix, not a secret)
NEW_SECRET_BYTES: Final = 32
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
USER_AGENT: Final = f"batchd/{__version__}"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(NEW_SECRET_BYTES)).decode("ascii")


def parse_secret(text: str) -> bytes:
    """The raw key of a ``whsec_...`` secret (the prefix is optional; padding may be omitted).

    Raises ``WebhookError`` with a message that never repeats the secret."""
    body = text.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookError("webhook secret is not valid base64 (expected whsec_<base64>)") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookError(
            f"webhook secret decodes to {len(key)} bytes; it must be between "
            f"{MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} (use `batchd webhooks new-secret`)"
        )
    return key


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of msg_id.timestamp.body>``."""
    if "." in msg_id:
        raise WebhookError("a webhook id may not contain '.'")
    content = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,...`` per secret, space-separated."""
    if not secrets_:
        raise WebhookError("a webhook endpoint needs at least one secret")
    return " ".join(sign(key, msg_id, timestamp, body) for key in secrets_)


def build_headers(
    secrets_: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one attempt (the timestamp is the attempt's, not the event's)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
