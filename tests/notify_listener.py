"""A fake systemd notify socket for tests: what PID 1 would receive from ``sd_notify``.

``NotifyListener`` binds an ``AF_UNIX`` datagram socket, either at a short filesystem path or in
the abstract namespace (``@name``), and collects every datagram parsed into a dict of its
``KEY=VALUE`` lines. Use it in-process (``monkeypatch.setenv(*listener.env_item)``) or hand
``listener.env`` to a subprocess::

    from tests.notify_listener import NotifyListener

    with NotifyListener.abstract() as listener:
        proc = subprocess.Popen([...], env={**os.environ, **listener.env})
        await listener.wait_for(lambda m: m.get("READY") == "1")
        proc.send_signal(signal.SIGTERM)
        await listener.wait_for(lambda m: m.get("STOPPING") == "1")
        assert listener.states() == ["READY=1", "STOPPING=1"]

Tests wait for messages with a timeout and assert on content and order, never on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

Message = dict[str, str]
Predicate = Callable[[Message], bool]

# Lines that mark a state change; STATUS, MONOTONIC_USEC and the like ride along with them.
STATE_KEYS = ("READY", "RELOADING", "STOPPING")
RECEIVE_BYTES = 64 * 1024


def parse_message(data: bytes) -> Message:
    """``b"READY=1\\nSTATUS=ok"`` -> ``{"READY": "1", "STATUS": "ok"}`` (UTF-8, strict)."""
    message: Message = {}
    for line in data.decode("utf-8").split("\n"):
        if line:
            key, _, value = line.partition("=")
            message[key] = value
    return message


class NotifyListener:
    """A bound notify socket and the messages received so far (in arrival order)."""

    def __init__(self, env_value: str, *, cleanup_dir: Path | None = None) -> None:
        self.env_value = env_value  # what $NOTIFY_SOCKET must hold: "/path" or "@name"
        self.raw: list[bytes] = []
        self.messages: list[Message] = []
        self._cleanup_dir = cleanup_dir
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(_bind_address(env_value))
        self._sock.setblocking(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def path(cls, directory: Path | None = None) -> NotifyListener:
        """A socket file. ``AF_UNIX`` paths are limited to 107 bytes, so by default it lives in
        a fresh short temporary folder (removed on ``close``) rather than in ``tmp_path``."""
        if directory is not None:
            return cls(str(directory / "notify.sock"))
        folder = Path(tempfile.mkdtemp(prefix="sdn-"))
        return cls(str(folder / "notify.sock"), cleanup_dir=folder)

    @classmethod
    def abstract(cls) -> NotifyListener:
        return cls(f"@batchd-test-{os.getpid()}-{os.urandom(6).hex()}")

    @classmethod
    def of_kind(cls, kind: Literal["path", "abstract"]) -> NotifyListener:
        return cls.path() if kind == "path" else cls.abstract()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value}

    @property
    def env_item(self) -> tuple[str, str]:
        return ("NOTIFY_SOCKET", self.env_value)

    # ------------------------------------------------------------------ reading
    def collect(self) -> list[Message]:
        """Read every datagram waiting on the socket; returns all messages so far."""
        while True:
            try:
                data = self._sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                return self.messages
            self.raw.append(data)
            self.messages.append(parse_message(data))

    def find(self, predicate: Predicate, *, start: int = 0) -> int | None:
        """Index of the first message at or after ``start`` that matches, after collecting."""
        self.collect()
        for index in range(start, len(self.messages)):
            if predicate(self.messages[index]):
                return index
        return None

    async def wait_for(
        self, predicate: Predicate, *, timeout_s: float = 10.0, start: int = 0
    ) -> Message:
        """The first message (at or after index ``start``) matching ``predicate``; waits for it
        without blocking the event loop. Raises ``TimeoutError`` with what did arrive."""
        deadline = time.monotonic() + timeout_s
        while (index := self.find(predicate, start=start)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching sd_notify message; got {self.messages!r}")
            await asyncio.sleep(0.005)
        return self.messages[index]

    async def wait_count(
        self, predicate: Predicate, count: int, *, timeout_s: float = 10.0
    ) -> list[Message]:
        """Wait until at least ``count`` messages match; returns the matching ones."""
        deadline = time.monotonic() + timeout_s
        while len(matching := [m for m in self.collect() if predicate(m)]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(matching)} of {count} messages; got {self.messages!r}")
            await asyncio.sleep(0.005)
        return matching

    def wait_for_sync(self, predicate: Predicate, *, timeout_s: float = 10.0) -> Message:
        """``wait_for`` for code without an event loop (blocks in ``select``)."""
        deadline = time.monotonic() + timeout_s
        while (index := self.find(predicate)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching sd_notify message; got {self.messages!r}")
            select.select([self._sock], [], [], remaining)
        return self.messages[index]

    # ------------------------------------------------------------------ views
    def states(self, keys: tuple[str, ...] = STATE_KEYS) -> list[str]:
        """``KEY=VALUE`` of the state lines, in arrival order: ``["READY=1", "STOPPING=1"]``."""
        self.collect()
        return [f"{k}={m[k]}" for m in self.messages for k in keys if k in m]

    def values(self, key: str) -> list[str]:
        """Every value sent for ``key`` (``values("STATUS")``), in arrival order."""
        self.collect()
        return [m[key] for m in self.messages if key in m]

    def count(self, key: str, value: str | None = None) -> int:
        return sum(1 for v in self.values(key) if value is None or v == value)

    def clear(self) -> None:
        self.collect()
        self.raw.clear()
        self.messages.clear()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._sock.close()
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            self._cleanup_dir = None

    def __enter__(self) -> NotifyListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _bind_address(env_value: str) -> str | bytes:
    if env_value.startswith("@"):
        return b"\0" + env_value[1:].encode()
    return env_value


@contextlib.contextmanager
def listening(kind: Literal["path", "abstract"] = "path") -> Iterator[NotifyListener]:
    """A listener of ``kind``, closed (and its folder removed) on exit."""
    with NotifyListener.of_kind(kind) as listener:
        yield listener


def is_watchdog(message: Message) -> bool:
    return message.get("WATCHDOG") == "1"


def is_ready(message: Message) -> bool:
    return message.get("READY") == "1"


def is_stopping(message: Message) -> bool:
    return message.get("STOPPING") == "1"


def is_reloading(message: Message) -> bool:
    return message.get("RELOADING") == "1"
