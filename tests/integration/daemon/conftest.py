"""Helpers for the in-process ``Daemon`` tests."""

from __future__ import annotations

from batchd.systemd import SystemdNotifier


class Recorder(SystemdNotifier):
    """Every notify message, in order (no socket)."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[str] = []

    def notify(self, *lines: str, wait: bool = True) -> bool:
        self.sent.append("\n".join(lines))
        return True


def kinds(recorder: Recorder) -> list[str]:
    """READY / RELOADING / STOPPING in order (STATUS-only messages left out)."""
    wanted = ("READY=1", "RELOADING=1", "STOPPING=1")
    return [w for m in recorder.sent for w in wanted if w in m.splitlines()]
