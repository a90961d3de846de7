"""Real services for the tests that need one (PostgreSQL, RabbitMQ, Redis, Chromium).

Each service is named by an environment variable with the local default. Where it does not
answer, its tests are skipped with a one-line reason, so a newcomer's machine with only python3
passes the README's test command; with ``BATCHD_TEST_REQUIRE_SERVICES=1`` (set by ``.ci/run``)
they fail instead, so CI never passes by skipping.

Read the variables at import time, before the hermetic-environment fixture clears ``BATCHD_*``
(it keeps ``BATCHD_TEST_*`` for this reason).
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

REQUIRE_VAR = "BATCHD_TEST_REQUIRE_SERVICES"


def required() -> bool:
    """True when a missing service must fail the run (CI) instead of skipping."""
    return os.environ.get(REQUIRE_VAR, "") == "1"


@dataclass(frozen=True)
class Service:
    name: str
    env: str
    default: str

    @property
    def url(self) -> str:
        return os.environ.get(self.env) or self.default

    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        return host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)

    def reachable(self, timeout_s: float = 1.0) -> bool:
        host, port = self.address()
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            return False

    def require(self) -> str:
        """The service's URL, or skip (fail when required) when nothing answers there."""
        if self.reachable():
            return self.url
        host, port = self.address()
        reason = f"{self.name} not reachable at {host}:{port} (set {self.env})"
        if required():
            pytest.fail(f"{reason}; {REQUIRE_VAR}=1 forbids skipping", pytrace=False)
        pytest.skip(reason)


_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "amqp": 5672, "redis": 6379}

POSTGRES = Service(
    "PostgreSQL", "BATCHD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
AMQP = Service("RabbitMQ", "BATCHD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = Service("Redis", "BATCHD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def chromium_path() -> str:
    """The Chromium binary for browser tests, or skip (fail when required) without one."""
    path = os.environ.get("BATCHD_TEST_CHROMIUM") or shutil.which("chromium") or ""
    if path and os.access(path, os.X_OK):
        return path
    reason = "Chromium not installed (apt-get install chromium, or set BATCHD_TEST_CHROMIUM)"
    if required():
        pytest.fail(f"{reason}; {REQUIRE_VAR}=1 forbids skipping", pytrace=False)
    pytest.skip(reason)
