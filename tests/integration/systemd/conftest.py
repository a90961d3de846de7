"""Fixtures: a fake systemd notify socket (``tests/notify_listener.py``), bound at a path or in
the abstract namespace, with ``$NOTIFY_SOCKET`` pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest

from tests.notify_listener import NotifyListener, listening


@pytest.fixture(params=["path", "abstract"])
def notify_listener(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifyListener]:
    """A listener of each kind (the test runs twice), with ``$NOTIFY_SOCKET`` set."""
    kind: Literal["path", "abstract"] = request.param
    with listening(kind) as listener:
        monkeypatch.setenv(*listener.env_item)
        yield listener
