"""``[api]``: where the HTTP API listens and its limits (the models only; ``batchd/api/`` serves).

Off by default: ``listen = []``. Each address is ``unix:<absolute path>`` (a Unix socket: the
caller is identified by ``SO_PEERCRED``) or ``<host>:<port>`` (TCP: bearer tokens only). A TCP
host must be a loopback address unless ``allow_remote`` is set, so the API never reaches the
network by accident.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MiB: Final = 1024 * 1024
UNIX_PREFIX: Final = "unix:"
MAX_UNIX_PATH: Final = 107  # sun_path holds 108 bytes with the NUL


def listen_problem(address: str, *, allow_remote: bool = True) -> str | None:
    """Why ``address`` cannot be listened on (None: it can). Pure."""
    if address.startswith(UNIX_PREFIX):
        path = address.removeprefix(UNIX_PREFIX)
        if not path.startswith("/"):
            return f"{address!r}: a Unix socket path must be absolute"
        if len(path.encode()) > MAX_UNIX_PATH:
            return f"{address!r}: a Unix socket path is at most {MAX_UNIX_PATH} bytes"
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{address!r}: expected unix:/path or host:port (port 1-65535)"
    host = host.strip("[]")
    if not host:
        return f"{address!r}: the host is missing (127.0.0.1:{port} for this machine only)"
    if not allow_remote and not _loopback(host):
        return f"{address!r}: not a loopback address; set api.allow_remote = true to serve it"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_address(value: str) -> str:
    problem = listen_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Address = Annotated[str, AfterValidator(_check_address)]


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    listen: list[Address] = []
    allow_remote: bool = False
    socket_mode: Annotated[int, Field(ge=0, le=0o777)] = 0o666
    tokens_credential: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] = (
        "api_tokens"
    )
    tokens_file: Path | None = None
    max_upload_bytes: Annotated[int, Field(ge=1, le=1024**4)] = 512 * MiB
    max_concurrent_uploads: Annotated[int, Field(ge=1, le=256)] = 4
    request_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    claim_wait_s: Annotated[float, Field(gt=0, le=600)] = 15.0

    @model_validator(mode="after")
    def _local_only(self) -> ApiSettings:
        """Addresses off this machine need ``allow_remote``."""
        found = (listen_problem(a, allow_remote=self.allow_remote) for a in self.listen)
        problems = [p for p in found if p]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def unix_paths(self) -> list[Path]:
        return [Path(a.removeprefix(UNIX_PREFIX)) for a in self.listen if a.startswith("unix:")]
