"""Signed webhook deliveries (Standard Webhooks), their schedule and URL safety.

``signing`` (stdlib only) and ``endpoint`` are cheap to import; ``urls``, ``delivery`` and
``decision`` pull in aiohttp and are imported from their modules where needed.
"""

from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.signing import new_secret, parse_secret

__all__ = ["WebhookEndpoint", "new_secret", "parse_secret"]
