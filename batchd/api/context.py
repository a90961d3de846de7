"""What every handler needs: the store, the routes, the loops' heartbeats, who is calling."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from batchd.api.auth import (
    Principal,
    Role,
    TokenEntry,
    bearer,
    check_token,
    peer_of,
    peer_principal,
)
from batchd.api.ledger import Ledger
from batchd.api.problems import Problem
from batchd.clock import Clock
from batchd.config import Settings
from batchd.folder_origin import processing_path
from batchd.health import ProviderGate
from batchd.models import Submission
from batchd.store.base import JobStore
from batchd.systemd import Heartbeats

PUBLIC: Final = frozenset({"/healthz", "/readyz", "/openapi.json"})


@dataclass
class ApiContext:
    store: JobStore
    settings: Settings
    clock: Clock
    heartbeats: Heartbeats
    ledger: Ledger
    tokens: tuple[TokenEntry, ...] = ()
    wake_intake: Callable[[], None] = lambda: None
    wake_tracker: Callable[[], None] = lambda: None
    gate: ProviderGate = field(default_factory=ProviderGate)
    service_uid: int = field(default_factory=os.geteuid)
    uploads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    # ------------------------------------------------------------------ callers
    def route_groups(self) -> dict[str, int]:
        """Each route's spool group (a route whose spool is gone is nobody's)."""
        found = {}
        for route in self.settings.routes:
            if route.spool is None:  # no drop folder: fed by another source
                continue
            try:
                found[route.name] = os.stat(route.spool).st_gid
            except OSError:
                continue
        return found

    def principal(self, request: web.Request) -> Principal:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and sock.family == socket.AF_UNIX:
            peer = peer_of(sock)
            return peer_principal(peer, self.route_groups(), service_uid=self.service_uid)
        token = bearer(request.headers.get("Authorization"))
        if token is None:
            raise Problem(401, "send Authorization: Bearer <token> (see [api] in the README)")
        found = check_token(self.tokens, token)
        if found is None:
            raise Problem(401, "unknown token")
        return found

    # ------------------------------------------------------------------ submissions
    def owner_of(self, sub: Submission) -> str | None:
        """Who posted it (the API's ledger) or dropped it (the owner of its input file)."""
        posted = self.ledger.owner_of(processing_path(sub))
        if posted is not None:
            return posted
        for path in (processing_path(sub), sub.results_dir and f"{sub.results_dir}/input.jsonl"):
            if path:
                try:
                    return f"uid:{Path(path).stat().st_uid}"
                except OSError:
                    continue
        return None

    async def visible(self, principal: Principal, submission_id: str) -> Submission:
        """The submission, or 404 (also when it is on a route the caller cannot see)."""
        sub = await self.store.get_submission(submission_id)
        if sub is None or not principal.sees(sub.route):
            raise Problem(404, f"no submission {submission_id} visible to you")
        return sub

    def require(self, principal: Principal, role: Role) -> None:
        ranks = {Role.READ: 0, Role.SUBMIT: 1, Role.ADMIN: 2}
        if ranks[principal.role] < ranks[role]:
            raise Problem(
                403,
                f"this needs the {role.value} role ({principal.name} is {principal.role.value})",
            )


CTX: Final = web.AppKey("ctx", ApiContext)
PRINCIPAL: Final = web.RequestKey("principal", Principal)
