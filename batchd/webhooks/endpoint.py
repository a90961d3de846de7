"""The runtime description of one webhook endpoint (built by ``config.py``)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from batchd.secret import Secret
from batchd.webhooks.schedule import STANDARD, RetryLadder


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    name: str
    url: str
    # Signing secrets, newest first; during a rotation every one of them signs each request.
    secrets: tuple[Secret, ...]
    events: tuple[str, ...] = ("*",)  # globs over event types, such as "batch.*"
    timeout_s: float = 15.0
    allow_http: bool = False
    allow_private: bool = False
    max_concurrency: int = 4
    max_response_bytes: int = 64 * 1024
    retry: RetryLadder = STANDARD  # when to try again after a failed attempt

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events)
