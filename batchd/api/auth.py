"""Who is calling: ``SO_PEERCRED`` on the Unix socket, bearer tokens over TCP.

On the socket, root and the service user (the daemon's own uid) may do everything; any other
user sees the routes whose spool belongs to one of their groups, may submit to them and may
cancel the submissions they own (``Principal.name`` ``uid:<n>``, the owner of a dropped file or
the caller who posted it). Over TCP a request carries ``Authorization: Bearer <token>``; the
tokens file holds, per line, ``<name> <role> <sha256 of the token, hex>`` (never the token), and
a token is compared in constant time against every hash. Roles: ``read`` (every route, read
only), ``submit`` (read, submit, cancel its own), ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pwd
import re
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from batchd.errors import ConfigError

TOKEN_PREFIX: Final = "bdt_"  # noqa: S105 (a prefix, not a secret)
_LINE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]{0,63})\s+(?P<role>\S+)\s+(?P<hash>\S+)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``routes`` None: every route."""

    name: str  # uid:<n> or token:<name>; what a submission's owner is compared with
    role: Role
    routes: frozenset[str] | None = None

    def sees(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    @property
    def can_submit(self) -> bool:
        return self.role is not Role.READ

    def may_cancel(self, route: str, owner: str | None) -> bool:
        if not self.sees(route):
            return False
        return self.role is Role.ADMIN or (self.can_submit and owner == self.name)


# ---------------------------------------------------------------------------- tokens
@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: Role
    digest: bytes


def token_digest(token: str) -> str:
    """What the tokens file holds for a token (tokens are random: a plain SHA-256 is enough)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    import secrets

    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_tokens(text: str, where: str) -> tuple[TokenEntry, ...]:
    """The tokens file: ``<name> <role> <sha256 hex>`` per line, ``#`` comments; a bad line is a
    ``ConfigError`` naming ``where`` and the line (never its content: it may be a raw token)."""
    entries: list[TokenEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _LINE.match(line)
        if found is None:
            raise ConfigError(f"{where} line {number}: expected '<name> <role> <sha256 hex>'")
        if found["role"] not in {r.value for r in Role}:
            raise ConfigError(f"{where} line {number}: role must be read, submit or admin")
        if not _HEX64.match(found["hash"]):
            raise ConfigError(
                f"{where} line {number}: the third field must be the token's SHA-256 (64 hex "
                "digits), not the token itself (batchd api-token prints the line)"
            )
        if any(e.name == found["name"] for e in entries):
            raise ConfigError(f"{where} line {number}: token name {found['name']!r} repeated")
        entries.append(TokenEntry(found["name"], Role(found["role"]), bytes.fromhex(found["hash"])))
    return tuple(entries)


def check_token(entries: tuple[TokenEntry, ...], token: str) -> Principal | None:
    """The principal of ``token``, comparing against every entry (constant time each)."""
    digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(entry.digest, digest):
            found = entry
    return None if found is None else Principal(f"token:{found.name}", found.role)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def load_tokens(path: Path | None) -> tuple[TokenEntry, ...]:
    if path is None or not path.exists():
        return ()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the API tokens: {exc}") from None
    return parse_tokens(text, str(path))


# ---------------------------------------------------------------------------- Unix peers
@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


class _Sock(Protocol):
    def getsockopt(self, level: int, option: int, size: int, /) -> bytes: ...


def peer_of(sock: _Sock) -> Peer:
    """The connected process of a Unix socket (asyncio hands a ``TransportSocket``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def groups_of(uid: int, gid: int) -> frozenset[int]:
    """The user's groups from the user and group databases (primary group included)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return frozenset({gid})
    return frozenset({gid, *os.getgrouplist(name, gid)})


def peer_principal(peer: Peer, route_groups: dict[str, int], *, service_uid: int) -> Principal:
    """Root and the service user: admin of everything; others: their routes (by spool group)."""
    if peer.uid in {0, service_uid}:
        return Principal(f"uid:{peer.uid}", Role.ADMIN)
    groups = groups_of(peer.uid, peer.gid)
    routes = frozenset(r for r, gid in route_groups.items() if gid in groups)
    return Principal(f"uid:{peer.uid}", Role.SUBMIT, routes)
