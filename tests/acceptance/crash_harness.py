"""Processes and servers for the whole-daemon crash test (``test_crash.py``).

- ``EmulatorProcess``: one ``batchd emulator`` child that outlives every daemon; its job and
  file lists are the ground truth for "exactly one provider job per chunk".
- ``WebhookReceiver``: a real aiohttp receiver on 127.0.0.1 that verifies every signature with
  ``standardwebhooks``, records every ``webhook-id`` (and the bytes it came with), and refuses
  the first attempt of a share of the events with 500 so that retries happen.
- ``DaemonProcess``: one ``batchd run`` child, its readiness read from a fake notify socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.notify_listener import NotifyListener, is_ready

API_KEY = "crash-test-key"
API_KEY_ENV = "CRASH_TEST_API_KEY"
SECRET_ENV = "CRASH_TEST_WEBHOOK_SECRET"
REPO = Path(__file__).resolve().parents[2]


async def wait_until(
    condition: Any, *, timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    """Poll ``condition()`` (sync or async) until true; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


# ------------------------------------------------------------------------------ emulator


@dataclass
class EmulatorProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, workdir: Path, args: list[str]) -> EmulatorProcess:
        """Start and wait (blocking, at most 30 s) until it listens."""
        out, log = workdir / "emulator.out", workdir / "emulator.log"
        with out.open("wb") as stdout, log.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "batchd", "emulator", "--port", "0", *args],
                stdout=stdout,
                stderr=stderr,
                env=_child_env({}),
            )
        deadline = time.monotonic() + 30
        while "listening on" not in out.read_text():
            assert proc.poll() is None, f"the emulator died: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the emulator did not listen within 30 s"
            time.sleep(0.05)
        url = out.read_text().split("listening on ", 1)[1].split()[0]
        return cls(proc, url, log)

    async def _get(self, session: aiohttp.ClientSession, path: str, **query: Any) -> Any:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with session.get(f"{self.url}{path}", params=query, headers=headers) as resp:
            assert resp.status == 200, f"GET {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def _all_pages(self, path: str) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            page = 0
            while True:
                data = await self._get(session, path, page=page, page_size=100)
                for item in data["data"]:
                    seen[item["id"]] = item
                if not data["data"]:
                    return list(seen.values())
                page += 1

    async def jobs(self) -> list[dict[str, Any]]:
        return await self._all_pages("/v1/batch/jobs")

    async def files(self) -> list[dict[str, Any]]:
        return await self._all_pages("/v1/files")

    async def clear_faults(self) -> None:
        """No more injected faults (the test's own listing must not be refused)."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.url}/_emulator/faults", json={"rules": []}) as resp,
        ):
            assert resp.status == 200, await resp.text()

    async def stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as session:
            result: dict[str, int] = await self._get(session, "/_emulator/stats")
            return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------ webhooks


@dataclass
class WebhookReceiver:
    """Records every delivery; refuses the first attempt of ``fail_rate`` of the events."""

    secret: str
    rng: random.Random
    fail_rate: float = 0.2
    slow_rate: float = 0.2  # answer after a short pause, so that kills land mid-delivery
    received: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    acked: set[str] = field(default_factory=set)
    refused: int = 0
    bad_signatures: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("webhook-id", "")
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, UnicodeDecodeError) as exc:
            self.bad_signatures.append(f"{event_id}: {exc}")
            return web.Response(status=400)
        first = event_id not in self.received
        self.received[event_id].append(body)
        if self.rng.random() < self.slow_rate:
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        if first and self.rng.random() < self.fail_rate:
            self.refused += 1
            return web.Response(status=500, text="try again")
        self.acked.add(event_id)
        return web.Response(status=204)

    @property
    def duplicates(self) -> int:
        return sum(len(bodies) - 1 for bodies in self.received.values())


# ------------------------------------------------------------------------------ the daemon


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BATCHD_") and k not in {"NOTIFY_SOCKET", "MISTRAL_API_KEY"}
    }
    env.update(extra)
    return env


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float
    notify_start: int

    @classmethod
    def spawn(
        cls,
        config: Path,
        log: Path,
        listener: NotifyListener,
        secret: str,
        *,
        crash_point: str | None = None,
    ) -> DaemonProcess:
        """``batchd run``; with ``crash_point``, through ``crash_points`` (dies there once)."""
        env = _child_env({**listener.env, API_KEY_ENV: API_KEY, SECRET_ENV: secret})
        entry = ["-m", "batchd"]
        if crash_point is not None:
            entry = ["-m", "tests.acceptance.crash_points", crash_point]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        start = len(listener.collect())
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [sys.executable, *entry, "run", "--config", str(config)],
                stdout=sink,
                stderr=sink,
                env=env,
                cwd=REPO,
            )
        return cls(proc, log, time.monotonic(), start)

    async def wait_ready(self, listener: NotifyListener, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while listener.find(is_ready, start=self.notify_start) is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"batchd exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"batchd not ready after {timeout_s:g} s: {self.tail()}")
            await asyncio.sleep(0.01)

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        await wait_until(lambda: not self.alive(), timeout_s=timeout_s, what="batchd to exit")
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    async def terminate(self, timeout_s: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def read_log_events(paths: list[Path]) -> list[dict[str, Any]]:
    """Every JSON log line of the daemon runs (a line cut by a kill is skipped)."""
    events = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
    return events
