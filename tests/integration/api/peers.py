"""Requests over the Unix socket from another user: a forked child drops to ``uid`` with
``groups`` (the test runs as root) and speaks HTTP with the standard library, so the daemon sees
a real ``SO_PEERCRED`` of that user."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any

NOBODY = 65534


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("batchd", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def _ask(sock: Path, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
    conn = _UnixHTTP(str(sock))
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def _child(sock: Path, uid: int, groups: list[int], calls: list[Any], out: int) -> None:
    os.setgroups(groups)
    os.setgid(groups[0] if groups else uid)
    os.setuid(uid)
    try:
        answers: Any = [_ask(sock, m, p, b) for m, p, b in calls]
    except Exception as exc:
        answers = {"error": repr(exc)}
    with os.fdopen(out, "w") as pipe:
        pipe.write(json.dumps(answers))


def _read_all(fd: int) -> str:
    with os.fdopen(fd) as pipe:
        return pipe.read()


async def as_user(
    sock: Path, uid: int, groups: list[int], calls: list[tuple[str, str, bytes | None]]
) -> list[tuple[int, Any]]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            _child(sock, uid, groups, calls, write_end)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    text = await asyncio.to_thread(_read_all, read_end)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
    answers = json.loads(text)
    assert isinstance(answers, list), answers
    return [(a[0], a[1]) for a in answers]


def _run_cli(argv: list[str], uid: int, groups: list[int], out: int) -> int:
    import threading

    from batchd.cli import run

    os.setgroups(groups)
    os.setgid(groups[0] if groups else uid)
    os.setuid(uid)
    os.dup2(out, 1)
    import sys

    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  (the parent's is pytest's)
    result: list[int] = []

    # a thread of its own: this (forked) thread still looks like it runs the parent's loop
    def main() -> None:
        try:
            result.append(run(argv))
        except BaseException:
            import traceback

            os.write(2, traceback.format_exc().encode())
            raise

    worker = threading.Thread(target=main)
    worker.start()
    worker.join()
    sys.stdout.flush()
    return result[0] if result else 99


async def cli_as_user(argv: list[str], uid: int, groups: list[int]) -> tuple[int, str]:
    """``batchd <argv>`` run in-process by a forked child as ``uid``: (exit code, stdout)."""
    import _strptime  # type: ignore[import-not-found]  # noqa: F401  (before the child loses access)

    import batchd.claims
    import batchd.cli._api_store
    import batchd.cli._submit
    import batchd.cli._views
    import batchd.cli.daemon_cmd
    import batchd.cli.jobs
    import batchd.submit_file  # noqa: F401

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 98
        try:
            os.close(read_end)
            code = _run_cli(argv, uid, groups, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    text = await asyncio.to_thread(_read_all, read_end)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    return os.waitstatus_to_exitcode(status), text
