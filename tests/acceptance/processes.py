"""Real processes for the acceptance tier: the emulator (``batchd emulator``) and the daemon
(``batchd run``), started with ``sys.executable -m batchd`` so that the code under test is the
installed package, with their output captured to files and always killed in teardown.

Everything here is synchronous and small; the waiting (with timeouts and log tails) lives in
``harness.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

URL_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
EMULATOR_START_TIMEOUT_S = 20.0
KILL_WAIT_S = 10.0

# Fast, deterministic jobs: about 3 emulated seconds each, no jitter.
FAST_PROCESSING: dict[str, float] = {
    "queue_s": 1,
    "request_s": 1,
    "parallelism": 50,
    "min_run_s": 1,
    "finalize_s": 1,
    "cancel_s": 1,
    "jitter": 0,
}


def tail_text(paths: Sequence[Path], lines: int = 40) -> str:
    """The last ``lines`` lines of each file, labelled (for failure messages)."""
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            text = ["<missing>"]
        parts.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text))
    return "\n".join(parts)


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> int:
    """Signal, wait, then SIGKILL if needed; always reaps (no ResourceWarning)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class LoggedProcess:
    """A child process whose stdout and stderr go to files in ``folder``."""

    def __init__(
        self, argv: Sequence[str], *, folder: Path, label: str, env: Mapping[str, str]
    ) -> None:
        self.stdout_path = folder / f"{label}.out"
        self.stderr_path = folder / f"{label}.err"
        self._out: IO[bytes] = self.stdout_path.open("wb")
        self._err: IO[bytes] = self.stderr_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=dict(env),
            cwd=folder,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def log_paths(self) -> list[Path]:
        return [self.stdout_path, self.stderr_path]

    def tail(self, lines: int = 40) -> str:
        return tail_text(self.log_paths, lines)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self, *, sig: int = signal.SIGKILL) -> int:
        """Stop the process (if still running) and close its log files."""
        try:
            return stop_process(self.proc, sig=sig)
        finally:
            self._out.close()
            self._err.close()


def batchd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchd", *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's (hermetic) environment, unbuffered output, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------- the emulator


def http_json(method: str, url: str, body: object | None = None, timeout_s: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


class EmulatorProcess(LoggedProcess):
    """``batchd emulator --port 0``; ``url`` is read from its start-up line."""

    def __init__(
        self,
        folder: Path,
        *,
        api_keys: Sequence[str] = (),
        speed: float = 100.0,
        seed: int = 7,
        processing: Mapping[str, float] | None = None,
        faults: Sequence[str] = (),
        label: str = "emulator",
    ) -> None:
        argv = batchd_argv("emulator", "--host", "127.0.0.1", "--port", "0")
        argv += ["--speed", f"{speed:g}", "--seed", str(seed)]
        argv += ["--data-dir", str(folder / f"{label}-files")]  # SIGKILL leaves nothing behind
        for key, value in {**FAST_PROCESSING, **(processing or {})}.items():
            argv += ["--processing", f"{key}={value:g}"]
        for spec in faults:
            argv += ["--fault", spec]
        env = child_env({"BATCHD_EMULATOR_API_KEYS": ",".join(api_keys)})
        super().__init__(argv, folder=folder, label=label, env=env)
        try:
            self.url = self._wait_for_url()
            assert self.health()["status"] == "ok"
        except BaseException:
            self.close()
            raise

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT_S
        while time.monotonic() < deadline:
            match = URL_RE.search(self.stdout_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.returncode is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"the emulator did not start\n{self.tail()}")

    # admin endpoints (no auth, never faulted)
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json("GET", f"{self.url}/_emulator/health")
        return result

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = http_json("GET", f"{self.url}/_emulator/stats")
        return result

    def advance(self, seconds: float) -> float:
        return float(
            http_json("POST", f"{self.url}/_emulator/advance", {"seconds": seconds})["now"]
        )

    def set_faults(self, rules: Sequence[Mapping[str, Any]]) -> None:
        http_json("PUT", f"{self.url}/_emulator/faults", {"rules": list(rules)})

    def clear_faults(self) -> None:
        self.set_faults([])

    def jobs(self, api_key: str) -> list[dict[str, Any]]:
        """Every batch job the emulator holds (through the public API)."""
        request = urllib.request.Request(
            f"{self.url}/v1/batch/jobs?page_size=1000",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data: list[dict[str, Any]] = json.loads(response.read())["data"]
            return data

    def file_ids(self, api_key: str) -> set[str]:
        """The ids of every file the emulator still holds (through the public API)."""
        request = urllib.request.Request(
            f"{self.url}/v1/files?page_size=1000",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return {f["id"] for f in json.loads(response.read())["data"]}
