"""Files API handlers (reference section 1.2) and the signed-URL download."""

from __future__ import annotations

from aiohttp import web

from batchd.emulator.files import FileRecord
from batchd.emulator.middleware import abort_connection, route_key
from batchd.emulator.state import STATE, EmulatorState
from batchd.emulator.validation import FilesQuery, SignedUrlQuery, validate_path_id, validate_query
from batchd.emulator.wire import blob_error, json_response

routes = web.RouteTableDef()
OCTET_STREAM = "application/octet-stream"
STREAM_CHUNK_BYTES = 256 * 1024


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def _file(request: web.Request) -> FileRecord:
    state = _state(request)
    status = state.config.behaviour.invalid_id_status
    file_id = validate_path_id("file_id", request.match_info["file_id"], status)
    return state.files.get(file_id)


@routes.post("/v1/files")
async def upload_file(request: web.Request) -> web.Response:
    record = await _state(request).files.upload(request)
    return json_response(record.to_wire())


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    query = validate_query(request.query, FilesQuery)
    page, total = _state(request).files.list(query)
    return json_response({"data": [r.to_wire() for r in page], "object": "list", "total": total})


@routes.get("/v1/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    return json_response({**_file(request).to_wire(), "deleted": False})


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    record = _file(request)
    _state(request).files.delete(record.id)
    return json_response({"id": record.id, "object": "file", "deleted": True})


@routes.get("/v1/files/{file_id}/content")
async def download_file(request: web.Request) -> web.StreamResponse:
    return await send_file(request, _file(request))


@routes.get("/v1/files/{file_id}/url")
async def signed_url(request: web.Request) -> web.Response:
    record = _file(request)
    query = validate_query(request.query, SignedUrlQuery)
    state = _state(request)
    expires_at = int(state.clock.now()) + query.expiry * 3600
    signature = state.signer.sign(record.id, expires_at)
    origin = request.url.origin()
    url = f"{origin}/blob/{record.id}?se={expires_at}&sp=r&sig={signature}"
    return json_response({"url": url})


@routes.get("/blob/{file_id}")
async def blob_download(request: web.Request) -> web.StreamResponse:
    """The URL that ``/url`` hands out: no bearer key, an HMAC signature and an expiry in
    emulated time. Errors look like the blob store's (XML, 403/404)."""
    state = _state(request)
    file_id = request.match_info["file_id"]
    try:
        expires_at = int(request.query.get("se", ""))
    except ValueError:
        return blob_error(403, "AuthenticationFailed", "Signature fields not well formed.")
    if not state.signer.verify(file_id, expires_at, request.query.get("sig", "")):
        return blob_error(403, "AuthenticationFailed", "Signature did not match.")
    if state.clock.now() > expires_at:
        return blob_error(403, "AuthenticationFailed", "Signed expiry time has passed.")
    if not state.files.exists(file_id):
        return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
    return await send_file(request, state.files.get(file_id))


async def send_file(request: web.Request, record: FileRecord) -> web.StreamResponse:
    """Stream from disk with ``Content-Length``; a ``truncate`` fault cuts the body short."""
    headers = {
        "Content-Type": OCTET_STREAM,
        "Content-Disposition": f'attachment; filename="{_header_safe(record.filename)}"',
    }
    rule = _state(request).faults.decide(route_key(request), None)
    if rule is None:
        return web.FileResponse(record.path, headers=headers)
    return await _send_truncated(request, record, headers, rule.fraction)


def _header_safe(filename: str) -> str:
    return "".join(c if " " <= c <= "~" and c not in {'"', "\\"} else "_" for c in filename)


async def _send_truncated(
    request: web.Request, record: FileRecord, headers: dict[str, str], fraction: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.content_length = record.size_bytes
    await response.prepare(request)
    remaining = int(record.size_bytes * fraction)
    with record.path.open("rb") as source:
        while remaining > 0:
            chunk = source.read(min(STREAM_CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await response.write(chunk)
    transport = request.transport
    if transport is not None:
        transport.close()
    else:  # pragma: no cover - the connection already went away
        abort_connection(request)
    return response
