"""A real daemon (in-process ``Daemon``, embedded emulator) serving the API on a real Unix socket
and a real TCP port, with one token per role."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchd.api.auth import new_token, token_digest
from batchd.client import Client
from batchd.config_load import load_settings
from batchd.daemon import Daemon
from tests.integration.daemon.conftest import Recorder

CONFIG = """\
[daemon]
data_dir = "{data}"
[intake]
min_age_s = 0.1
scan_interval_s = 1.0
[track]
poll_initial_s = 0.2
poll_max_s = 0.5
[providers.emulator]
kind = "emulator"
emulator_speed = {speed}
[[routes]]
name = "chat"
spool = "{spool}"
provider = "emulator"
model = "mistral-small-latest"
[[routes]]
name = "other"
spool = "{other}"
provider = "emulator"
model = "mistral-small-latest"
[api]
listen = ["unix:{sock}", "127.0.0.1:{port}"]
tokens_file = "{tokens}"
max_upload_bytes = {max_upload}
max_concurrent_uploads = 2
claim_wait_s = 10
request_timeout_s = {request_timeout}
"""


def lines(n: int, tag: str = "x") -> bytes:
    return "".join(
        json.dumps(
            {
                "custom_id": f"{tag}{i}",
                "body": {"messages": [{"role": "user", "content": f"hi {tag} {i}"}]},
            }
        )
        + "\n"
        for i in range(n)
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Api:
    daemon: Daemon
    root: Path
    sock: Path
    tcp: str
    tokens: dict[str, str]  # role -> raw token
    task: asyncio.Task[int]
    short: Path  # holds the socket (a short path)

    def unix(self) -> Client:
        return Client(f"unix:{self.sock}")

    def over_tcp(self, role: str) -> Client:
        return Client(self.tcp, token=self.tokens[role])


@dataclass
class Setup:
    config: Path
    sock: Path
    short: Path
    tcp: str
    tokens: dict[str, str]


def write_setup(
    tmp_path: Path,
    *,
    speed: float = 3600.0,
    max_upload: int = 1 << 20,
    request_timeout_s: float = 60.0,
) -> Setup:
    """A configuration with two routes, a socket, a TCP port and one token per role."""
    short = Path(tempfile.mkdtemp(prefix="bd-api-", dir="/tmp"))  # sun_path is 108 bytes
    short.chmod(0o755)  # other users reach the socket (tests/integration/api/peers.py)
    tokens = {role: new_token() for role in ("read", "submit", "admin")}
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(
        "# name role sha256\n"
        + "".join(f"{role}er {role} {token_digest(t)}\n" for role, t in tokens.items())
    )
    tokens_file.chmod(0o600)
    port = free_port()
    config = tmp_path / "batchd.toml"
    config.write_text(
        CONFIG.format(
            data=tmp_path / "data",
            spool=short / "spool",  # reachable by other users (the data folder is not)
            other=short / "other",
            speed=speed,
            sock=short / "api.sock",
            port=port,
            tokens=tokens_file,
            max_upload=max_upload,
            request_timeout=request_timeout_s,
        )
    )
    return Setup(config, short / "api.sock", short, f"http://127.0.0.1:{port}", tokens)


async def start_api(
    tmp_path: Path,
    *,
    speed: float = 3600.0,
    max_upload: int = 1 << 20,
    request_timeout_s: float = 60.0,
) -> Api:
    setup = write_setup(
        tmp_path, speed=speed, max_upload=max_upload, request_timeout_s=request_timeout_s
    )
    daemon = Daemon(
        load_settings(setup.config, environ={}),
        config_path=setup.config,
        install_signals=False,
        systemd=Recorder(),
    )
    task = asyncio.create_task(daemon.run())
    waiter = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not daemon.ready.is_set():
        waiter.cancel()
        raise RuntimeError(f"the daemon did not start: {task.exception() if task.done() else ''}")
    return Api(daemon, tmp_path, setup.sock, setup.tcp, setup.tokens, task, setup.short)


async def stop_api(api: Api) -> None:
    api.daemon.request_stop()
    assert await asyncio.wait_for(api.task, timeout=30) == 0
    shutil.rmtree(api.short, ignore_errors=True)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    try:
        yield started
    finally:
        await stop_api(started)
