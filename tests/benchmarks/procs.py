"""Child processes of a benchmark: the emulator and the daemon, each in its own process.

``Emulator`` runs ``python -m batchd emulator`` and talks to its admin endpoints (never counted
in its stats). ``Daemon`` runs ``python -m batchd run --config ...`` with a notify socket, so
that start-up is timed from ``exec`` to ``READY=1`` exactly as systemd sees it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from tests.notify_listener import NotifyListener, is_ready

REPO = Path(__file__).resolve().parents[2]
API_KEY_ENV = "BATCHD_BENCH_API_KEY"
API_KEY = "bench-key"
PRODUCT_ENV = "BATCHD_BENCH_PRODUCT"
_LISTENING = re.compile(r"listening on (http://\S+)")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every child: this checkout first on the path, a fixed API key."""
    env = dict(os.environ)
    # BATCHD_BENCH_PRODUCT: a folder holding a ``batchd`` package to measure instead of this
    # checkout's (to try a proposed change without touching the tree).
    first = [env[PRODUCT_ENV]] if env.get(PRODUCT_ENV) else []
    path = [*first, str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path).rstrip(os.pathsep)
    env[API_KEY_ENV] = API_KEY
    env["MISTRAL_API_KEY"] = API_KEY
    env.pop("NOTIFY_SOCKET", None)
    env.pop("BATCHD_CONFIG", None)
    env.update(extra)
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def sdk_script(server: str, inbox: Path, out: Path, *extra: str) -> list[str]:
    """The command that runs the baseline, ``sdk_script.py``, on every file of ``inbox``."""
    return python_module(
        "tests.benchmarks.sdk_script", "--server", server, "--inbox", str(inbox), "--out", str(out)
    ) + list(extra)


@dataclass(frozen=True)
class ClockMap:
    """Emulated time to wall-clock time: the emulator's clock runs ``speed`` times as fast."""

    wall_ref: float
    emu_ref: float
    speed: float

    def wall(self, emulated: float) -> float:
        return self.wall_ref + (emulated - self.emu_ref) / self.speed


@dataclass
class Emulator:
    """A running ``batchd emulator`` process."""

    proc: subprocess.Popen[bytes]
    url: str
    speed: float
    log: IO[bytes]
    args: tuple[str, ...]

    @classmethod
    def start(
        cls,
        log_path: Path,
        *,
        speed: float,
        seed: int = 1,
        faults: tuple[str, ...] = (),
        processing: dict[str, float] | None = None,
        behaviour: dict[str, object] | None = None,
    ) -> Emulator:
        args = ["--host", "127.0.0.1", "--port", "0", "--speed", f"{speed:g}", "--seed", str(seed)]
        for spec in faults:
            args += ["--fault", spec]
        for key, value in (processing or {}).items():
            args += ["--processing", f"{key}={value}"]
        for key, choice in (behaviour or {}).items():
            args += ["--behaviour", f"{key}={choice}"]
        log = log_path.open("wb")
        proc = subprocess.Popen(
            python_module("batchd", "emulator", *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=log_path.parent,  # not the checkout: PYTHONPATH decides which batchd runs
        )
        deadline = time.monotonic() + 30
        while (match := _LISTENING.search(log_path.read_text(errors="replace"))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc, timeout_s=5)
                raise RuntimeError(f"the emulator did not start (see {log_path})")
            time.sleep(0.05)
        return cls(proc, match.group(1), speed, log, tuple(args))

    # ------------------------------------------------------------------ admin endpoints
    def _admin(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self._admin("GET", "/_emulator/stats")
        return result

    def reset_stats(self) -> None:
        self._admin("POST", "/_emulator/stats/reset")

    def set_faults(self, rules: list[dict[str, object]]) -> None:
        self._admin("PUT", "/_emulator/faults", {"rules": rules})

    def clock(self) -> ClockMap:
        before = time.time()
        now = float(self._admin("GET", "/_emulator/health")["now"])
        after = time.time()
        return ClockMap((before + after) / 2, now, self.speed)

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=10)
        self.log.close()


@dataclass
class Daemon:
    """A running ``batchd run`` process with its notify socket."""

    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    listener: NotifyListener | None = None
    started_at: float = 0.0
    ready_s: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _drainer: threading.Thread | None = field(default=None, repr=False)

    def start(self, *, timeout_s: float = 60.0) -> float:
        """Exec the daemon and wait for ``READY=1``; returns seconds from exec to READY."""
        self.listener = NotifyListener.path()
        self._log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            python_module("batchd", "run", "--config", str(self.config)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(**self.listener.env),
            cwd=self.log_path.parent,
        )
        self.listener.wait_for_sync(is_ready, timeout_s=timeout_s)
        self.ready_s = time.perf_counter() - self.started_at
        self._drainer = threading.Thread(target=self._drain, args=(self.listener,), daemon=True)
        self._drainer.start()
        return self.ready_s

    def _drain(self, listener: NotifyListener) -> None:
        """Read the notify socket as systemd does: the daemon's ``sd_notify`` send blocks (up
        to 1 s, on its event loop) once ``net.unix.max_dgram_qlen`` (10) messages are unread."""
        while listener is self.listener:
            with contextlib.suppress(OSError):
                listener.clear()
            time.sleep(0.2)

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        user, system = self.cpu_times()
        return user + system

    def cpu_times(self) -> tuple[float, float]:
        """CPU seconds of the daemon so far: (user, system)."""
        times = self.ps.cpu_times()
        return float(times.user), float(times.system)

    def rss_bytes(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self, *, kill: bool = False, timeout_s: float = 30.0) -> float:
        """SIGTERM (or SIGKILL) and wait; returns how long the process took to exit."""
        started = time.perf_counter()
        if self.proc is not None:
            if kill:
                self.proc.kill()
                self.proc.wait()
            else:
                stop_process(self.proc, timeout_s=timeout_s)
        listener, self.listener = self.listener, None
        if self._drainer is not None:
            self._drainer.join()
        if listener is not None:
            listener.close()
        if self._log is not None:
            self._log.close()
        self.proc, self._log, self._drainer = None, None, None
        return time.perf_counter() - started


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; never raises for a process already gone."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
