"""The file store: file objects in memory, contents on disk, uploads streamed to disk.

Uploads are written chunk by chunk while bytes and lines are counted, so a 512 MB file never
sits in memory. A file that a running job still reads is unlinked only when the job lets go
of it (``pin``/``unpin``), so deleting an input file never breaks a job.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from batchd.emulator.clock import EmulatedClock, IdFactory
from batchd.emulator.validation import FilesQuery, UploadForm, validate
from batchd.emulator.wire import (
    bad_request,
    detail_item,
    not_found,
    too_large,
    validation_error,
)

CHUNK_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
_MIMETYPES = {
    ".jsonl": "application/jsonl",
    ".json": "application/json",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".pdf": "application/pdf",
}
_TEXT_TYPES = frozenset({"application/jsonl", "application/json", "text/plain", "text/csv"})
_SAMPLE_TYPE_BY_PURPOSE = {"batch": "batch_request"}
MALFORMED_FORM = "There was an error parsing the body"  # Starlette's words for a broken form


@dataclass
class FileRecord:
    id: str
    filename: str
    size_bytes: int
    created_at: int
    purpose: str
    sample_type: str
    source: str
    path: Path
    num_lines: int | None = None
    mimetype: str | None = None
    visibility: str | None = "workspace"
    expires_at: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size_bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "sample_type": self.sample_type,
            "source": self.source,
            "num_lines": self.num_lines,
            "mimetype": self.mimetype,
            "signature": None,
            "expires_at": self.expires_at,
            "visibility": self.visibility,
        }


@dataclass
class Received:
    path: Path
    filename: str
    content_type: str | None
    size_bytes: int
    num_lines: int


class FileStore:
    def __init__(self, root: Path, clock: EmulatedClock, ids: IdFactory, max_bytes: int) -> None:
        self.root = root
        self._clock = clock
        self._ids = ids
        self._max_bytes = max_bytes
        self._files: dict[str, FileRecord] = {}
        self._pins: Counter[str] = Counter()
        self._doomed: dict[str, Path] = {}

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._files)

    def all(self) -> list[FileRecord]:
        return list(self._files.values())

    def get(self, file_id: str) -> FileRecord:
        record = self._files.get(file_id)
        if record is None:
            raise not_found("File", file_id)
        return record

    def exists(self, file_id: str) -> bool:
        return file_id in self._files

    def list(self, query: FilesQuery) -> tuple[list[FileRecord], int | None]:
        matches = [r for r in reversed(self._files.values()) if _matches(r, query)]
        start = max(query.page, 0) * max(query.page_size, 0)
        page = matches[start : start + max(query.page_size, 0)]
        return page, len(matches) if query.include_total else None

    # ---------------------------------------------------------------- changes
    def new_path(self, file_id: str) -> Path:
        return self.root / file_id

    def add(self, record: FileRecord) -> FileRecord:
        self._files[record.id] = record
        return record

    def delete(self, file_id: str) -> None:
        record = self.get(file_id)
        del self._files[file_id]
        if self._pins[file_id]:
            self._doomed[file_id] = record.path
        else:
            _unlink(record.path)

    def pin(self, file_ids: Iterable[str]) -> None:
        self._pins.update(file_ids)

    def unpin(self, file_ids: Iterable[str]) -> None:
        for file_id in file_ids:
            self._pins[file_id] -= 1
            if self._pins[file_id] <= 0:
                del self._pins[file_id]
                doomed = self._doomed.pop(file_id, None)
                if doomed is not None:
                    _unlink(doomed)

    # ---------------------------------------------------------------- upload
    async def upload(self, request: web.Request) -> FileRecord:
        file_id = self._ids.new()
        fields, received = await self.read_form(request, self.new_path(file_id))
        if received is None:
            missing = detail_item("missing", ["body", "file"], "Field required", None)
            raise validation_error([missing])
        try:
            form = validate(UploadForm, fields, "body")
        except BaseException:
            _unlink(received.path)
            raise
        return self.add(self._record(file_id, form, received))

    def _record(self, file_id: str, form: UploadForm, received: Received) -> FileRecord:
        now = int(self._clock.now())
        suffix = PurePosixPath(received.filename).suffix.lower()
        mimetype = _MIMETYPES.get(suffix) or received.content_type or "application/octet-stream"
        return FileRecord(
            id=file_id,
            filename=received.filename,
            size_bytes=received.size_bytes,
            created_at=now,
            purpose=form.purpose.value,
            sample_type=_SAMPLE_TYPE_BY_PURPOSE.get(form.purpose.value, "instruct"),
            source="upload",
            path=received.path,
            num_lines=received.num_lines if mimetype in _TEXT_TYPES else None,
            mimetype=mimetype,
            visibility=form.visibility,
            expires_at=now + form.expiry * 3600 if form.expiry else None,
        )

    async def read_form(
        self, request: web.Request, target: Path
    ) -> tuple[dict[str, str], Received | None]:
        """The form fields, and the file part streamed to ``target`` (None: no file part)."""
        fields: dict[str, str] = {}
        received: Received | None = None
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            return fields, None  # not multipart: FastAPI reports the missing file
        try:
            async for part in _parts(reader):
                if part.name == "file" and received is None:
                    received = await self._receive(part, target)
                elif part.name:
                    fields[part.name] = await _read_field(part)
        except (ValueError, AssertionError, HttpProcessingError) as exc:  # malformed multipart
            _unlink(target)
            raise bad_request(MALFORMED_FORM) from exc
        except BaseException:
            _unlink(target)
            raise
        return fields, received

    async def _receive(self, part: BodyPartReader, target: Path) -> Received:
        size = lines = 0
        last = b"\n"
        with target.open("wb") as sink:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                size += len(chunk)
                if size > self._max_bytes:
                    raise too_large(self._max_bytes)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
                _write(sink, chunk)
        if size and last != b"\n":
            lines += 1
        ctype = part.headers.get("Content-Type")
        return Received(target, part.filename or "file", ctype, size, lines)


async def _parts(reader: MultipartReader) -> Any:
    while True:
        part = await reader.next()
        if part is None:
            return
        if isinstance(part, BodyPartReader):
            yield part


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            break
    return bytes(data[:MAX_FIELD_BYTES]).decode("utf-8", errors="replace")


def _write(sink: BinaryIO, chunk: bytes) -> None:
    sink.write(chunk)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _matches(record: FileRecord, query: FilesQuery) -> bool:
    checks = (
        not query.sample_type or record.sample_type in query.sample_type,
        not query.source or record.source in query.source,
        query.purpose is None or record.purpose == query.purpose,
        not query.mimetypes or record.mimetype in query.mimetypes,
        not query.search or query.search.lower() in record.filename.lower(),
    )
    return all(checks)
