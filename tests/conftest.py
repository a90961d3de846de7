"""Shared fixtures. Tests are hermetic: no BATCHD_* variable or credential leaks in from the
environment of whoever runs them."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# No time limit per example: timings are measured in tests/benchmarks, never asserted, and a
# loaded CI machine makes Hypothesis' default 200 ms deadline fail at random.
settings.register_profile("batchd", deadline=None)
settings.load_profile("batchd")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BATCHD_TEST_"):
            continue  # the test run's own settings (tests/services.py)
        if key.startswith("BATCHD_") or key in {
            "CREDENTIALS_DIRECTORY",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "MISTRAL_API_KEY",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "PGPASSWORD",
            "STATE_DIRECTORY",
        }:
            monkeypatch.delenv(key, raising=False)
