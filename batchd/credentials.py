"""Where secrets come from: systemd credentials, a private file, or (for development) the
environment.

A secret is looked up in that order: ``$CREDENTIALS_DIRECTORY/<credential>`` (systemd
``LoadCredential=``), then a file that must be a regular file owned by the current user with mode
0600 or stricter, then an environment variable. One trailing newline is stripped. The value is
wrapped in ``Secret`` at once; error messages name where we looked, never what we read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from batchd.errors import ConfigError, WebhookError
from batchd.secret import Secret

CREDENTIALS_DIRECTORY: Final = "CREDENTIALS_DIRECTORY"
MAX_SECRET_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class SecretSources:
    """What the environment offered when the configuration was loaded (captured once)."""

    credentials_dir: Path | None = None
    env: Mapping[str, Secret] = field(default_factory=dict)

    @classmethod
    def capture(cls, environ: Mapping[str, str], names: Iterable[str]) -> SecretSources:
        """Keep ``$CREDENTIALS_DIRECTORY`` and the (non-empty) values of the named variables."""
        directory = environ.get(CREDENTIALS_DIRECTORY) or None
        values = {n: Secret(environ[n]) for n in sorted(set(names)) if environ.get(n)}
        return cls(Path(directory) if directory else None, values)


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """The places one secret may be found; ``what`` names it in messages (a config key)."""

    what: str
    credential: str | None = None
    file: Path | None = None
    env: str | None = None

    def places(self) -> str:
        """A human list of where we looked, for a "not found" message."""
        found = []
        if self.credential:
            found.append(f"$CREDENTIALS_DIRECTORY/{self.credential}")
        if self.file:
            found.append(str(self.file))
        if self.env:
            found.append(f"${self.env}")
        return ", ".join(found) or "nowhere (no source configured)"


def resolve_secret(spec: SecretSpec, sources: SecretSources) -> tuple[Secret, str] | None:
    """The secret and a description of where it came from, or None when no source has it."""
    if spec.credential and sources.credentials_dir is not None:
        path = sources.credentials_dir / spec.credential
        if path.exists():
            return _read(spec, path, private=False), f"$CREDENTIALS_DIRECTORY/{spec.credential}"
    if spec.file is not None:
        return _read(spec, spec.file, private=True), str(spec.file)
    if spec.env and spec.env in sources.env:
        return _strip(spec, sources.env[spec.env].reveal(), f"${spec.env}"), f"${spec.env}"
    return None


def api_key(spec: SecretSpec, sources: SecretSources, *, required: bool) -> Secret | None:
    """An API key: one token, no whitespace or control characters (they would break the
    ``Authorization`` header). ``required``: a missing key is a ``ConfigError``."""
    found = resolve_secret(spec, sources)
    if found is None:
        if required:
            raise ConfigError(f"{spec.what}: no API key found (looked in {spec.places()})")
        return None
    secret, where = found
    if any(ch.isspace() or not ch.isprintable() for ch in secret.reveal()):
        raise ConfigError(f"{spec.what}: the key in {where} contains whitespace or control chars")
    return secret


def webhook_secrets(spec: SecretSpec, sources: SecretSources) -> tuple[Secret, ...]:
    """Signing secrets for rotation: one ``whsec_...`` per line, newest first (blank lines and
    ``#`` comments ignored). Each is checked with ``webhooks.signing.parse_secret``."""
    from batchd.webhooks.signing import parse_secret

    found = resolve_secret(spec, sources)
    if found is None:
        raise ConfigError(f"{spec.what}: no signing secret found (looked in {spec.places()})")
    secrets: list[Secret] = []
    for number, line in enumerate(found[0].reveal().splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            try:
                parse_secret(text)
            except WebhookError as exc:
                raise ConfigError(f"{spec.what}: {found[1]} line {number}: {exc}") from None
            secrets.append(Secret(text))
    if not secrets:
        raise ConfigError(f"{spec.what}: {found[1]} holds no secret")
    return tuple(secrets)


def _read(spec: SecretSpec, path: Path, *, private: bool) -> Secret:
    """Read a small regular file; ``private`` also requires our ownership and mode 0600."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigError(f"{spec.what}: cannot open {path}: {exc.strerror}") from exc
    try:
        problem = file_problem(os.fstat(fd), private=private)
        if problem:
            raise ConfigError(f"{spec.what}: {path}: {problem}")
        raw = _read_fd(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{spec.what}: {path}: larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{spec.what}: {path}: not valid UTF-8") from None
    return _strip(spec, text, str(path))


def _read_fd(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def file_problem(info: os.stat_result, *, private: bool) -> str | None:
    """Why a secret file is unacceptable (None: it is fine). Pure, for tests."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not private:
        return None
    if info.st_uid != os.geteuid():
        return f"owned by uid {info.st_uid}, not by the current user (uid {os.geteuid()})"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return f"mode {mode:04o} is too open: it must be 0600 or stricter (chmod 600)"
    return None


def _strip(spec: SecretSpec, text: str, where: str) -> Secret:
    """Strip one trailing newline (``\\n`` or ``\\r\\n``); an empty secret is an error."""
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text.strip():
        raise ConfigError(f"{spec.what}: {where} is empty")
    return Secret(text)
