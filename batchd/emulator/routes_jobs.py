"""Batch jobs API handlers (reference section 1.3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from batchd.emulator.engine import owner_of
from batchd.emulator.lifecycle import JobRecord, status, to_wire
from batchd.emulator.middleware import api_key_of
from batchd.emulator.state import STATE, EmulatorState
from batchd.emulator.validation import (
    CreateJobIn,
    JobQuery,
    JobsQuery,
    OrderBy,
    metadata_filter,
    parse_json_body,
    validate,
    validate_path_id,
    validate_query,
)
from batchd.emulator.wire import ApiError, json_response, not_found, object_error

routes = web.RouteTableDef()


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def _job(request: web.Request) -> JobRecord:
    state = _state(request)
    status_on_error = state.config.behaviour.invalid_id_status
    job_id = validate_path_id("job_id", request.match_info["job_id"], status_on_error)
    job = state.engine.get(job_id)
    if job is None:
        raise not_found("Batch job", job_id)
    return job


@routes.post("/v1/batch/jobs")
async def create_job(request: web.Request) -> web.Response:
    state = _state(request)
    body = validate(CreateJobIn, parse_json_body(await request.read()), "body")
    for file_id in body.input_files or []:
        _input_file(state, str(file_id))
    job = await state.engine.create(body, api_key_of(request))
    return json_response(to_wire(job, state.clock.now()))


def _input_file(state: EmulatorState, file_id: str) -> None:
    """An unknown input file is refused with 404 (``File <id> not found``), or with the same
    message as a 400 or 422 (``missing_input_status``)."""
    try:
        state.files.get(file_id)
    except ApiError as exc:
        status = state.config.behaviour.missing_input_status
        if status == 404:
            raise
        message = f"File {file_id} not found"
        raise ApiError(status, object_error(message, code="invalid_file")) from exc


@routes.get("/v1/batch/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    state = _state(request)
    query = validate_query(request.query, JobsQuery)
    metadata = metadata_filter(request.query)  # validated even when ignored
    if state.config.behaviour.metadata_filter == "ignore":
        metadata = {}
    state.engine.catch_up()
    owner = owner_of(api_key_of(request))
    matches = select_jobs(state.engine.jobs.values(), query, metadata, owner)
    start = max(query.page, 0) * max(query.page_size, 0)
    page = matches[start : start + max(query.page_size, 0)]
    now = state.clock.now()
    data = [to_wire(job, now) for job in page]
    return json_response({"data": data, "object": "list", "total": len(matches)})


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def select_jobs(
    jobs: Iterable[JobRecord], query: JobsQuery, metadata: Mapping[str, str], owner: str
) -> list[JobRecord]:
    """Every job matching the filters, in the requested order (``created_after`` inclusive,
    at whole-second resolution like ``created_at``)."""
    after = _timestamp(query.created_after) if query.created_after else None
    statuses = {s.value for s in query.status} if query.status else None
    wanted = list(metadata.items())

    def keep(job: JobRecord) -> bool:
        if query.model is not None and job.model != query.model:
            return False
        if query.agent_id is not None and job.agent_id != query.agent_id:
            return False
        if after is not None and int(job.created_at) < after:
            return False
        if query.created_by_me and job.owner != owner:
            return False
        if wanted and not all((job.metadata or {}).get(k) == v for k, v in wanted):
            return False
        return statuses is None or status(job).value in statuses

    ordered = list(jobs)
    if query.order_by is OrderBy.NEWEST:
        ordered.reverse()
    return [job for job in ordered if keep(job)]


@routes.get("/v1/batch/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    state = _state(request)
    job = _job(request)
    inline = validate_query(request.query, JobQuery).inline
    return json_response(await _job_wire(state, job, inline))


async def _job_wire(state: EmulatorState, job: JobRecord, inline: bool | None) -> dict[str, Any]:
    """``outputs`` are filled once terminal: by default for jobs created with inline
    ``requests``, or whenever ``inline=true``; never with the ``outputs="null"`` behaviour
    (the real API has answered null at a terminal status; the SDK checks for it)."""
    want_outputs = inline if inline is not None else job.inline
    want_outputs = want_outputs and state.config.behaviour.outputs == "fill"
    outputs = await state.engine.read_outputs(job) if want_outputs and job.ready else None
    return to_wire(job, state.clock.now(), outputs)


@routes.post("/v1/batch/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    state = _state(request)
    job = _job(request)
    state.engine.cancel(job)
    return json_response(await _job_wire(state, job, None))


@routes.delete("/v1/batch/jobs/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    state = _state(request)
    job = _job(request)
    state.engine.delete(job)
    return json_response({"id": job.id, "object": "batch", "deleted": True})
