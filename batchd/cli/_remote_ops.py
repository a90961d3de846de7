"""The ``batchd remote`` operations and their output: each action takes an open provider and
the parsed arguments and returns a ``View`` (a JSON-able value plus how to draw it)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from rich.console import Console
from rich.table import Table

from batchd.clock import utc_iso
from batchd.errors import ProviderError, UsageError
from batchd.providers.base import BatchProvider, FileRef, JobFilter, JobPage, JobSnapshot
from batchd.providers.mistral import MistralProvider
from batchd.providers.mistral_models import (
    MistralFile,
    MistralJob,
    MistralJobFilter,
    MistralJobSpec,
)
from batchd.providers.mistral_wire import FilePage, FileQuery

Kind = Literal["job", "jobs", "file", "files", "done"]


@dataclass(frozen=True, slots=True)
class View:
    kind: Kind
    data: Any  # JSON-able


@runtime_checkable
class RemoteFiles(Protocol):
    """File operations beyond the ``BatchProvider`` seam (Mistral has them)."""

    async def upload_file(
        self,
        path: Path,
        *,
        filename: str | None = ...,
        purpose: str = ...,
        visibility: str = ...,
        expiry: int | None = ...,
    ) -> FileRef: ...
    async def list_files(self, query: FileQuery = ...) -> FilePage: ...
    def iter_files(self, query: FileQuery = ...) -> AsyncIterator[FileRef]: ...
    async def file_url(self, file_id: str, *, expiry_hours: int = ...) -> str: ...


@runtime_checkable
class RemoteJobs(Protocol):
    """The paged jobs list beyond the ``BatchProvider`` seam (Mistral has it)."""

    async def list_jobs(self, filters: JobFilter) -> JobPage: ...
    def iter_jobs(self, filters: JobFilter) -> AsyncIterator[JobSnapshot]: ...


# ---------------------------------------------------------------------------- views


def _iso(ts: float | None) -> str | None:
    return utc_iso(ts) if ts is not None else None


def job_view(job: JobSnapshot) -> dict[str, Any]:
    mistral = job if isinstance(job, MistralJob) else None
    view: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value,
        "status": job.raw_status,
        "endpoint": job.endpoint,
        "model": job.model,
        "agent_id": mistral.agent_id if mistral else None,
        "metadata": dict(job.metadata),
        "total_requests": job.counts.total,
        "completed_requests": job.counts.completed,
        "succeeded_requests": job.counts.succeeded,
        "failed_requests": job.counts.failed,
        "input_files": list(job.input_files),
        "output_file": job.output_file,
        "error_file": job.error_file,
        "errors": [{"message": e.message, "count": e.count} for e in job.errors],
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
    }
    if mistral and mistral.outputs is not None:
        view["outputs"] = [dict(o) for o in mistral.outputs]
    return view


def file_view(ref: FileRef) -> dict[str, Any]:
    return {
        "id": ref.id,
        "filename": ref.filename,
        "bytes": ref.size_bytes,
        "created_at": _iso(ref.created_at),
        "purpose": ref.purpose,
        "sample_type": ref.sample_type,
        "source": ref.source,
        "num_lines": ref.num_lines,
        "mimetype": ref.mimetype,
        "visibility": ref.visibility if isinstance(ref, MistralFile) else None,
        "expires_at": _iso(ref.expires_at),
        "deleted": ref.deleted,
    }


# ---------------------------------------------------------------------------- jobs


def _job_filter(args: argparse.Namespace) -> JobFilter:
    return MistralJobFilter(
        page=args.page,
        page_size=args.page_size,
        model=args.model,
        agent_id=args.agent_id,
        metadata=dict(args.metadata),
        created_after=args.created_after,
        created_by_me=args.created_by_me,
        states=tuple(dict.fromkeys(s for group in args.status for s in group)),
        order_by=args.order_by,
    )


async def list_jobs(provider: BatchProvider, args: argparse.Namespace) -> View:
    if not isinstance(provider, RemoteJobs):
        raise UsageError(f"provider {provider.name!r} does not offer the jobs list")
    filters = _job_filter(args)
    if args.all:
        jobs = [job_view(j) async for j in provider.iter_jobs(filters)]
        return View("jobs", {"data": jobs, "total": len(jobs), "page": None, "page_size": None})
    page = await provider.list_jobs(filters)
    data = [job_view(j) for j in page.jobs]
    return View(
        "jobs", {"data": data, "total": page.total, "page": page.page, "page_size": page.page_size}
    )


def read_requests(path: Path) -> tuple[Mapping[str, Any], ...]:
    """Inline requests from a JSONL file: one ``{"custom_id", "body"}`` object per line. A
    missing (or null) ``custom_id`` becomes the request's 0-based index as a string (blank
    lines do not count), as the emulator does for files; ids must be unique."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    requests: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"{path}: line {number}: not JSON") from exc
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            raise UsageError(f"{path}: line {number}: expected an object with a 'body' object")
        if item.get("custom_id") is None:
            item = {**item, "custom_id": str(len(requests))}
        requests.append(item)
    ids = Counter(str(item["custom_id"]) for item in requests)
    if duplicates := sorted(i for i, n in ids.items() if n > 1):
        raise UsageError(f"{path}: duplicate custom_id(s): {', '.join(duplicates[:5])}")
    return tuple(requests)


async def create_job(provider: BatchProvider, args: argparse.Namespace) -> View:
    file_ids: list[str] = list(args.file_id or [])
    for path in args.input_file or []:
        ref = await provider.upload_file(path)
        file_ids.append(ref.id)
    spec = MistralJobSpec(
        endpoint=args.endpoint,
        model=args.model,
        input_files=tuple(file_ids),
        requests=read_requests(args.requests) if args.requests else None,
        metadata=dict(args.metadata),
        timeout_hours=args.timeout_hours,
        agent_id=args.agent_id,
    )
    try:
        return View("job", job_view(await provider.create_job(spec)))
    except ProviderError as exc:
        if args.input_file:  # keep it one line, but say what was left behind
            exc.message = f"{exc.message} (uploaded input files kept: {', '.join(file_ids)})"
            exc.args = (exc.message,)
        raise


async def get_job(provider: BatchProvider, args: argparse.Namespace) -> View:
    if args.inline is None:
        return View("job", job_view(await provider.get_job(args.job_id)))
    if not isinstance(provider, MistralProvider):
        raise UsageError(f"provider {provider.name!r} has no inline results (--inline)")
    return View("job", job_view(await provider.get_job(args.job_id, inline=args.inline)))


async def cancel_job(provider: BatchProvider, args: argparse.Namespace) -> View:
    return View("job", job_view(await provider.cancel_job(args.job_id)))


async def delete_job(provider: BatchProvider, args: argparse.Namespace) -> View:
    await provider.delete_job(args.job_id)
    return View("done", {"id": args.job_id, "object": "batch", "deleted": True})


# ---------------------------------------------------------------------------- files


def _files_api(provider: BatchProvider) -> RemoteFiles:
    if not isinstance(provider, RemoteFiles):
        raise UsageError(f"provider {provider.name!r} does not offer the whole Files API")
    return provider


async def upload_file(provider: BatchProvider, args: argparse.Namespace) -> View:
    ref = await _files_api(provider).upload_file(
        args.path,
        filename=args.name,
        purpose=args.purpose,
        visibility=args.visibility,
        expiry=args.expiry,
    )
    return View("file", file_view(ref))


async def list_files(provider: BatchProvider, args: argparse.Namespace) -> View:
    query = FileQuery(
        page=args.page,
        page_size=args.page_size,
        include_total=not args.no_total,
        sample_types=tuple(args.sample_type),
        sources=tuple(args.source),
        search=args.search,
        purpose=args.purpose,
        mimetypes=tuple(args.mimetype),
    )
    files_api = _files_api(provider)
    if args.all:
        refs = [file_view(f) async for f in files_api.iter_files(query)]
        return View("files", {"data": refs, "total": len(refs), "page": None, "page_size": None})
    page = await files_api.list_files(query)
    return View(
        "files",
        {
            "data": [file_view(f) for f in page.files],
            "total": page.total,
            "page": page.page,
            "page_size": page.page_size,
        },
    )


async def get_file(provider: BatchProvider, args: argparse.Namespace) -> View:
    return View("file", file_view(await provider.get_file(args.file_id)))


async def delete_file(provider: BatchProvider, args: argparse.Namespace) -> View:
    await provider.delete_file(args.file_id)
    return View("done", {"id": args.file_id, "object": "file", "deleted": True})


async def download_file(provider: BatchProvider, args: argparse.Namespace) -> View:
    size = await provider.download_file(args.file_id, args.path)
    return View("done", {"id": args.file_id, "path": str(args.path), "bytes": size})


async def file_url(provider: BatchProvider, args: argparse.Namespace) -> View:
    url = await _files_api(provider).file_url(args.file_id, expiry_hours=args.expiry_hours)
    return View("done", {"id": args.file_id, "url": url})


# ---------------------------------------------------------------------------- output


def _console() -> Console:
    from batchd.cli._output import console

    made = console()
    return made if made.is_terminal else console(width=400)


def show(view: View, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(view.data, indent=2))
        return
    from batchd.cli._output import is_terminal

    if not is_terminal() and view.kind in ("jobs", "files"):
        _plain_rows(view)
        return
    console = _console()
    if view.kind == "jobs":
        console.print(_jobs_table(view.data["data"]))
        _footer(view.data, console)
    elif view.kind == "files":
        console.print(_files_table(view.data["data"]))
        _footer(view.data, console)
    else:
        console.print(_fields(view.data))


def _counted(data: Mapping[str, Any]) -> str:
    where = f"page {data['page']}: " if data["page"] is not None else ""
    total = data["total"] if data["total"] is not None else "?"
    return f"{where}{len(data['data'])} shown of {total}"


def _footer(data: Mapping[str, Any], console: Console) -> None:
    console.print(_counted(data), style="dim")


def _plain_rows(view: View) -> None:
    """Piped: tab-separated rows with a header line, values in full; the count on stderr."""
    from batchd.cli._output import note, tsv

    table = (
        _jobs_table(view.data["data"]) if view.kind == "jobs" else _files_table(view.data["data"])
    )
    columns = [str(c.header) for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    rows = [
        dict(zip(columns, (str(col[i]) for col in cells), strict=True))
        for i in range(table.row_count)
    ]
    print(tsv(rows, columns))
    note(_counted(view.data))


def _jobs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "STATUS", "STATE", "MODEL", "ENDPOINT", "DONE", "FAILED", "CREATED"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        done = f"{row['completed_requests']}/{row['total_requests']}"
        table.add_row(
            row["id"],
            row["status"],
            row["state"],
            row["model"] or "-",
            row["endpoint"],
            done,
            str(row["failed_requests"]),
            row["created_at"] or "-",
        )
    return table


def _files_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "FILENAME", "BYTES", "PURPOSE", "TYPE", "SOURCE", "LINES", "CREATED"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        lines = "-" if row["num_lines"] is None else str(row["num_lines"])
        table.add_row(
            row["id"],
            row["filename"],
            str(row["bytes"]),
            row["purpose"] or "-",
            row["sample_type"] or "-",
            row["source"] or "-",
            lines,
            row["created_at"] or "-",
        )
    return table


def _fields(data: Mapping[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in data.items():
        if value is None or value in ([], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        table.add_row(key, text)
    return table
