"""``POST /v1/submissions``: a JSONL body handed to a route's inbox, as ``batchd submit`` does.

The API is not a source of its own: it writes the body to ``inbox/.<name>.<random>.part``
(ignored by intake) while it streams in, validates it as intake will, refuses content the route
already ran (unless ``allow_duplicate``), writes the per-file options as the sidecar, records
the caller in the ledger, then renames the file into the inbox. From there the drop folder's
intake claims it: the same validation and exactly-once path as a dropped file. The answer (202)
comes once intake has claimed it, with its submission id (``id`` null when intake has not
claimed it within ``claim_wait_s``: ask again with the same ``Idempotency-Key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from batchd import options as sidecars
from batchd.api.auth import Principal
from batchd.api.context import CTX, PRINCIPAL, ApiContext
from batchd.api.ledger import Entry, key_of
from batchd.api.problems import Problem
from batchd.batchfile import FileLimits, parse_batch_file
from batchd.claims import spool_paths
from batchd.config import RouteConfig
from batchd.errors import ConfigError, IntakeRejected
from batchd.folder_origin import processing_path
from batchd.models import Submission
from batchd.spool import fsync_dir, name_allowed, rename_noreplace

CHUNK_BYTES: Final = 256 * 1024
CLAIM_POLL_S: Final = 0.05
MAX_KEY_LEN: Final = 255


async def post_submission(request: web.Request) -> web.Response:
    ctx, who = request.app[CTX], request[PRINCIPAL]
    route = route_for(ctx, who, request.query.get("route"))
    name = request.query.get("name", "")
    if not name_allowed(name):
        raise Problem(400, "query parameter name: [A-Za-z0-9._-], ends in .jsonl")
    given = _options(request.query.get("options"))
    key = _idempotency_key(request, who)
    if key is not None and (done := ctx.ledger.by_key(key)) is not None:
        return await _replay(ctx, done, await _body_digest(request, ctx))
    if ctx.uploads.locked():
        raise Problem(429, "too many uploads at once; try again shortly", retry_after_s=1)
    async with ctx.uploads:
        sub = await accept(
            ctx,
            lambda part: _receive(request, ctx, part),
            who=who,
            route=route,
            name=name,
            given=given,
            key=key,
        )
    return _answer(sub, name, route.name)


def route_for(ctx: ApiContext, who: Principal, name: str | None) -> RouteConfig:
    try:
        route = ctx.settings.route(name) if name else ctx.settings.routes[0]
    except ConfigError:
        raise Problem(404, f"no route named {name!r}") from None
    if not who.sees(route.name):
        raise Problem(404, f"no route named {route.name!r} visible to you")
    if not who.can_submit:
        raise Problem(403, f"{who.name} may only read (role read)")
    return route


def _options(raw: str | None) -> sidecars.FileOptions | None:
    if raw is None:
        return None
    try:
        return sidecars.parse_options(raw.encode(), "options")
    except IntakeRejected as exc:
        raise Problem(422, str(exc), errors=[str(p) for p in exc.problems]) from None


def _idempotency_key(request: web.Request, who: Principal) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_KEY_LEN:
        raise Problem(400, f"Idempotency-Key: 1 to {MAX_KEY_LEN} characters")
    return key_of(who.name, raw)


async def accept(
    ctx: ApiContext,
    receive: Callable[[Path], Awaitable[str]],
    *,
    who: Principal,
    route: RouteConfig,
    name: str,
    given: sidecars.FileOptions | None,
    key: str | None,
) -> Submission | None:
    """Receive the file into the inbox's part file, check it, hand it to intake; the
    submission once claimed (None: not within ``claim_wait_s``)."""
    inbox = spool_paths(route).inbox
    part = inbox / f".{name}.{secrets.token_hex(6)}.part"
    try:
        digest = await receive(part)
        if key is not None and (done := ctx.ledger.by_key(key)) is not None:
            if digest != done.body_sha256:  # a retry that raced the first request
                raise Problem(422, "this Idempotency-Key was used with another body")
            return await _claimed(ctx, route.name, done.processing_path)
        await asyncio.to_thread(_validate, ctx, part, route, given)
        await _refuse_duplicate(ctx, route, given, digest)
        # the inode survives the rename: intake will record processing/<inode>-<name>
        processing = str(spool_paths(route).processing / f"{part.stat().st_ino}-{name}")
        ctx.ledger.record(Entry(processing, who.name, digest, key))  # before intake can see it
        await asyncio.to_thread(_hand_over, part, inbox, name, given)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    ctx.wake_intake()
    return await _claimed(ctx, route.name, processing)


async def _receive(request: web.Request, ctx: ApiContext, part: Path) -> str:
    """Stream the body into ``part`` (0640), refusing it past ``max_upload_bytes``."""
    limit = ctx.settings.api.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the body is larger than api.max_upload_bytes ({limit})")
    return await write_part(request.content.iter_chunked(CHUNK_BYTES), part, limit)


async def write_part(chunks: AsyncIterator[bytes], part: Path, limit: int) -> str:
    digest, size = hashlib.sha256(), 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    with os.fdopen(fd, "wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"the body is larger than api.max_upload_bytes ({limit})")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if size == 0:
        raise Problem(422, "the body is empty: send the batch file's JSONL lines")
    return digest.hexdigest()


async def _body_digest(request: web.Request, ctx: ApiContext) -> str:
    """A retried request's body, read only to compare it with the first one's."""
    limit, digest, size = ctx.settings.api.max_upload_bytes, hashlib.sha256(), 0
    while chunk := await request.content.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is larger than api.max_upload_bytes ({limit})")
        digest.update(chunk)
    return digest.hexdigest()


def _validate(
    ctx: ApiContext, part: Path, route: RouteConfig, given: sidecars.FileOptions | None
) -> None:
    limits = ctx.settings.intake
    endpoint = (given.endpoint if given else None) or route.endpoint
    try:
        parse_batch_file(
            part,
            endpoint=endpoint,
            limits=FileLimits(
                max_file_bytes=limits.max_file_bytes,
                max_line_bytes=limits.max_line_bytes,
                max_lines=limits.max_lines,
            ),
        )
    except IntakeRejected as exc:
        errors = [{"line": p.line, "reason": p.reason} for p in exc.problems]
        raise Problem(422, f"invalid batch file: {exc}", errors=errors) from None


async def _refuse_duplicate(
    ctx: ApiContext, route: RouteConfig, given: sidecars.FileOptions | None, digest: str
) -> None:
    if ctx.settings.intake.duplicates == "allow" or (given and given.allow_duplicate):
        return
    earlier = await ctx.store.find_duplicate(route.name, digest)
    if earlier is not None:
        raise Problem(
            409,
            f"route {route.name} already ran this content as {earlier.id} "
            "(options allow_duplicate: true runs it again)",
            earlier_id=earlier.id,
        )


def _hand_over(part: Path, inbox: Path, name: str, given: sidecars.FileOptions | None) -> None:
    """Sidecar first (intake reads it when it claims the file), then the file renamed in."""
    if (inbox / name).exists():
        raise Problem(409, f"a file named {name} is already waiting in the inbox")
    sidecar = sidecars.write_sidecar(inbox, name, given) if given else None
    try:
        rename_noreplace(part, inbox / name)
    except FileExistsError:
        if sidecar is not None:
            sidecar.unlink(missing_ok=True)
        raise Problem(409, f"a file named {name} is already waiting in the inbox") from None
    fsync_dir(inbox)


async def _claimed(ctx: ApiContext, route: str, processing: str) -> Submission | None:
    loop = asyncio.get_running_loop()
    until = loop.time() + ctx.settings.api.claim_wait_s
    while True:
        for sub in await ctx.store.list_submissions(route=route, limit=50):
            if processing_path(sub) == processing:
                return sub
        if loop.time() >= until:
            return None
        await asyncio.sleep(CLAIM_POLL_S)


async def _replay(ctx: ApiContext, done: Entry, digest: str) -> web.Response:
    if digest != done.body_sha256:
        raise Problem(422, "this Idempotency-Key was used with another body")
    name = Path(done.processing_path).name.partition("-")[2]
    route = _route_of(ctx, done.processing_path)
    sub = await _claimed(ctx, route, done.processing_path) if route else None
    response = _answer(sub, name, route or "")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _route_of(ctx: ApiContext, processing: str) -> str | None:
    folder = Path(processing).parent
    for route in ctx.settings.routes:
        if spool_paths(route).processing == folder:
            return route.name
    return None


def _answer(sub: Submission | None, name: str, route: str) -> web.Response:
    body: dict[str, Any] = {
        "id": sub.id if sub else None,
        "name": name,
        "route": route,
        "state": sub.state.value if sub else "queued",
    }
    headers = {"Location": f"/v1/submissions/{sub.id}"} if sub else {}
    return web.Response(
        status=202, text=json.dumps(body), content_type="application/json", headers=headers
    )
