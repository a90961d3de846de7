"""The acceptance harness: one emulator process, the real ``batchd run`` process (started,
stopped, killed and restarted as a test says), a fake systemd notify socket for readiness, and
read access to the daemon's SQLite store and spools.

Every wait has a timeout and fails with the tail of the daemon's (and emulator's) logs; every
process is killed in ``close()``. Use it through the ``harness`` fixture (``conftest.py``)::

    async def test_x(harness: Harness) -> None:
        harness.start_emulator()
        harness.configure([RouteSpec("chat")])
        await harness.start()
        harness.drop("chat", "a.jsonl", chat_lines(3))
        sub = await harness.wait_done("a.jsonl")
"""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from batchd.models import Event, Job, Submission, SubmissionState
from batchd.spool import SpoolPaths
from batchd.store.sqlite import SqliteJobStore
from tests.acceptance.configs import RouteSpec, daemon_config, write_config
from tests.acceptance.processes import (
    EmulatorProcess,
    LoggedProcess,
    batchd_argv,
    child_env,
    tail_text,
)
from tests.notify_listener import NotifyListener, is_ready

__all__ = [
    "DaemonProcess",
    "EmulatorProcess",
    "Harness",
    "RouteSpec",
    "chat_lines",
    "new_api_key",
    "read_jsonl",
]

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0  # reliability target S5: exit within 10 s of SIGTERM
WAIT_TIMEOUT_S = 30.0
POLL_S = 0.05


def new_api_key() -> str:
    """A canary API key shaped like a real Mistral key (32 letters and digits, no prefix that
    a generic redaction pattern would recognise)."""
    return "CANARY" + secrets.token_hex(13)


def chat_lines(count: int, prefix: str = "r", *, max_tokens: int = 4) -> str:
    """``count`` valid chat-completion requests, custom_ids ``<prefix>0..``."""
    return "".join(
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "body": {
                    "messages": [{"role": "user", "content": f"question {prefix}{i}"}],
                    "max_tokens": max_tokens,
                },
            }
        )
        + "\n"
        for i in range(count)
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class DaemonProcess(LoggedProcess):
    """One run of ``batchd run --config <path>``."""

    def __init__(self, folder: Path, config: Path, *, label: str, env: Mapping[str, str]) -> None:
        super().__init__(
            batchd_argv("run", "--config", str(config)), folder=folder, label=label, env=env
        )

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line of this run, parsed (other lines skipped)."""
        events = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.spool_root = root / "spools"
        self.config_path = root / "batchd.toml"
        self.api_key = new_api_key()
        self.emulator: EmulatorProcess | None = None
        self.daemon: DaemonProcess | None = None
        self.runs: list[DaemonProcess] = []
        self.listener = NotifyListener.path()
        self._store: SqliteJobStore | None = None
        self._expect_running = False

    # ------------------------------------------------------------------ set-up
    def start_emulator(self, **options: Any) -> EmulatorProcess:
        """``batchd emulator`` accepting only ``self.api_key`` (see ``EmulatorProcess``)."""
        options.setdefault("api_keys", [self.api_key])
        self.emulator = EmulatorProcess(self.root, **options)
        return self.emulator

    def configure(self, routes: Sequence[RouteSpec], **overrides: Any) -> Path:
        """Write the daemon's configuration (``overrides``: ``intake={...}``, ``provider=``)."""
        assert self.emulator is not None, "start the emulator first"
        doc = daemon_config(
            data_dir=self.data_dir,
            spool_root=self.spool_root,
            emulator_url=self.emulator.url,
            routes=routes,
            **overrides,
        )
        return write_config(self.config_path, doc)

    def listen(self, kind: Literal["path", "abstract"]) -> NotifyListener:
        """Replace the notify socket by a fresh one of ``kind`` (before ``start``)."""
        self.listener.close()
        self.listener = NotifyListener.of_kind(kind)
        return self.listener

    def spool(self, route: str) -> SpoolPaths:
        return SpoolPaths(self.spool_root / route)

    # ------------------------------------------------------------------ the daemon
    def spawn(
        self, *, env: Mapping[str, str] | None = None, api_key: str | None = None
    ) -> DaemonProcess:
        """Start ``batchd run`` without waiting for readiness."""
        extra = {"MISTRAL_API_KEY": api_key or self.api_key, **self.listener.env, **(env or {})}
        run = DaemonProcess(
            self.root, self.config_path, label=f"daemon-{len(self.runs) + 1}", env=child_env(extra)
        )
        self.runs.append(run)
        self.daemon = run
        return run

    async def start(
        self, *, env: Mapping[str, str] | None = None, api_key: str | None = None
    ) -> DaemonProcess:
        """Start ``batchd run`` and wait for ``READY=1`` on the notify socket."""
        seen = len(self.listener.collect())
        run = self.spawn(env=env, api_key=api_key)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.listener.find(is_ready, start=seen) is None:
            if run.returncode is not None:
                raise AssertionError(f"batchd exited with {run.returncode}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no READY=1 within {READY_TIMEOUT_S}s\n{self.tail()}")
            await asyncio.sleep(0.01)
        self._expect_running = True
        return run

    async def stop(self, *, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> float:
        """Signal the daemon and wait for it to exit with 0 within ``timeout_s``; returns the
        seconds it took."""
        run = self._current()
        self._expect_running = False
        started = time.monotonic()
        run.send(sig)
        code = await self.wait_exit(timeout_s)
        assert code == 0, f"batchd exited with {code}\n{self.tail()}"
        return time.monotonic() - started

    async def wait_exit(self, timeout_s: float) -> int:
        run = self._current()
        self._expect_running = False
        deadline = time.monotonic() + timeout_s
        while (code := run.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"batchd still running {timeout_s}s later\n{self.tail()}")
            await asyncio.sleep(0.02)
        return code

    async def restart(self, **start_options: Any) -> DaemonProcess:
        """SIGTERM (exit 0 expected), then start again and wait for READY=1."""
        await self.stop()
        return await self.start(**start_options)

    def kill(self) -> None:
        """SIGKILL the daemon (no clean-up at all) and reap it."""
        self._expect_running = False
        self._current().close(sig=signal.SIGKILL)

    def _current(self) -> DaemonProcess:
        assert self.daemon is not None, "the daemon was never started"
        return self.daemon

    async def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60
    ) -> tuple[int, str, str]:
        """Run a ``batchd`` command; returns (exit code, stdout, stderr)."""
        import subprocess

        extra = {"MISTRAL_API_KEY": self.api_key, **(env or {})}

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                batchd_argv(*args),
                capture_output=True,
                text=True,
                env=child_env(extra),
                cwd=self.root,
                timeout=timeout_s,
                check=False,
            )

        done = await asyncio.to_thread(run)
        return done.returncode, done.stdout, done.stderr

    # ------------------------------------------------------------------ files
    def drop(self, route: str, name: str, content: str | bytes) -> Path:
        """Write ``.<name>.part`` in the inbox, then rename it in (the drop-folder contract)."""
        inbox = self.spool(route).inbox
        staging = inbox / f".{name}.part"
        staging.write_bytes(content.encode() if isinstance(content, str) else content)
        target = inbox / name
        staging.rename(target)
        return target

    # ------------------------------------------------------------------ the store
    async def store(self) -> SqliteJobStore:
        """The daemon's database, opened from the test (WAL: reads run beside the daemon)."""
        if self._store is None:
            db = self.data_dir / "batchd.sqlite3"
            assert db.exists(), "the daemon has not created its database yet"
            self._store = SqliteJobStore(db)
            await self._store.open()
        return self._store

    async def submission(self, name: str, route: str | None = None) -> Submission | None:
        """The newest submission of the file ``name``."""
        store = await self.store()
        for sub in await store.list_submissions(route=route):
            if sub.name == name:
                return sub
        return None

    async def wait_submission(
        self,
        name: str,
        states: Sequence[SubmissionState],
        *,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> Submission:
        async def reached() -> Submission | None:
            sub = await self.submission(name)
            return sub if sub is not None and sub.state in states else None

        wanted = "/".join(s.value for s in states)
        sub: Submission = await self.wait_until(reached, f"{name} {wanted}", timeout_s=timeout_s)
        return sub

    async def wait_done(self, name: str, *, timeout_s: float = WAIT_TIMEOUT_S) -> Submission:
        return await self.wait_submission(name, [SubmissionState.DONE], timeout_s=timeout_s)

    async def jobs(self, submission_id: str) -> list[Job]:
        return await (await self.store()).jobs_for_submission(submission_id)

    async def events(self, submission_id: str | None = None) -> list[Event]:
        """Outbox events, oldest first (only those of ``submission_id`` when given)."""
        events = await (await self.store()).list_events(limit=100_000)
        if submission_id is None:
            return events
        return [e for e in events if e.data.get("submission_id") == submission_id]

    async def event_types(self, submission_id: str | None = None) -> list[str]:
        return [e.type for e in await self.events(submission_id)]

    # ------------------------------------------------------------------ waiting
    async def wait_until(
        self,
        predicate: Callable[[], Any],
        what: str,
        *,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> Any:
        """Poll ``predicate`` (sync or async) until it returns something truthy; fail with the
        logs' tails after ``timeout_s``, or at once if the daemon died meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            run = self.daemon
            if self._expect_running and run is not None and run.returncode is not None:
                raise AssertionError(
                    f"batchd exited with {run.returncode} while waiting for {what}\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what}\n{self.tail()}"
                )
            await asyncio.sleep(POLL_S)

    def log_events(self, *, all_runs: bool = True) -> list[dict[str, Any]]:
        runs = self.runs if all_runs else self.runs[-1:]
        return [event for run in runs for event in run.log_events()]

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Log records named ``event`` whose fields include ``fields``."""
        return [
            e
            for e in self.log_events()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def tail(self, lines: int = 40) -> str:
        paths = [p for run in self.runs[-2:] for p in run.log_paths]
        if self.emulator is not None:
            paths += self.emulator.log_paths
        return tail_text(paths, lines)

    # ------------------------------------------------------------------ teardown
    async def close(self) -> None:
        self._expect_running = False
        try:
            for run in self.runs:
                run.close(sig=signal.SIGKILL)
            if self.emulator is not None:
                self.emulator.close(sig=signal.SIGKILL)
        finally:
            if self._store is not None:
                await self._store.close()
                self._store = None
            self.listener.close()
