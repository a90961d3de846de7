"""Mistral wire formats: status mapping, lenient parsing, SDK-identical encodings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from batchd.errors import ProviderPermanent, ProviderTransient
from batchd.models import PROVIDER_STATES, JobState, RequestCounts
from batchd.providers.base import (
    JobFilter,
    JobPage,
    JobSpec,
    ProviderJobError,
    ResultLine,
)
from batchd.providers.http import encode_query
from batchd.providers.mistral_models import (
    MistralFile,
    MistralJob,
    MistralJobFilter,
    MistralJobSpec,
)
from batchd.providers.mistral_wire import (
    STATUS_TO_STATE,
    FileQuery,
    create_body,
    files_query,
    jobs_query,
    next_page,
    page_is_repeat,
    parse_file,
    parse_file_page,
    parse_job,
    parse_job_page,
    parse_result_line,
    parse_signed_url,
    state_of,
    statuses_for,
)

# ---------------------------------------------------------------------------- statuses

KNOWN = [
    ("QUEUED", JobState.PENDING),
    ("RUNNING", JobState.RUNNING),
    ("CANCELLATION_REQUESTED", JobState.CANCELLING),
    ("SUCCESS", JobState.SUCCEEDED),
    ("FAILED", JobState.FAILED),
    ("TIMEOUT_EXCEEDED", JobState.EXPIRED),
    ("CANCELLED", JobState.CANCELLED),
]


@pytest.mark.parametrize(("status", "state"), KNOWN)
def test_every_known_status_maps(status: str, state: JobState) -> None:
    assert state_of(status) is state
    assert state_of(status.lower()) is state  # lenient about case
    assert statuses_for([state]) == [status]


def test_the_mapping_covers_exactly_the_documented_statuses() -> None:
    assert dict(KNOWN) == dict(STATUS_TO_STATE)
    assert set(STATUS_TO_STATE.values()) == PROVIDER_STATES - {JobState.UNKNOWN}


@pytest.mark.parametrize("status", ["WEIRD", "", "VALIDATING", "in_progress"])
def test_unknown_status_is_unknown(status: str) -> None:
    assert state_of(status) is JobState.UNKNOWN


def test_statuses_for_keeps_order_and_drops_unmappable() -> None:
    assert statuses_for([JobState.RUNNING, JobState.PENDING, JobState.RUNNING]) == [
        "RUNNING",
        "QUEUED",
    ]
    assert statuses_for([JobState.UNKNOWN]) == []


# ---------------------------------------------------------------------------- jobs

MINIMAL_JOB = {
    "id": "b1",
    "input_files": [],
    "endpoint": "/v1/chat/completions",
    "errors": [],
    "status": "QUEUED",
    "created_at": 1732400347,
    "total_requests": 0,
    "completed_requests": 0,
    "succeeded_requests": 0,
    "failed_requests": 0,
}

FULL_JOB = {
    **MINIMAL_JOB,
    "object": "batch",
    "input_files": ["f1", "f2"],
    "metadata": {"batchd_job": "j1", "n": 3},
    "model": "mistral-small-latest",
    "agent_id": None,
    "output_file": "o1",
    "error_file": "e1",
    "errors": [{"message": "2 lines invalid", "count": 2}, "bare string", {"message": "m"}],
    "outputs": [{"custom_id": "a", "response": {"status_code": 200, "body": {}}}, "junk"],
    "status": "SUCCESS",
    "total_requests": 10,
    "completed_requests": 10,
    "succeeded_requests": 8,
    "failed_requests": 2,
    "started_at": 1732400351,
    "completed_at": 1732400376,
    "brand_new_field": {"nested": True},
}


def test_parse_minimal_job() -> None:
    assert parse_job(MINIMAL_JOB) == MistralJob(
        id="b1",
        state=JobState.PENDING,
        raw_status="QUEUED",
        endpoint="/v1/chat/completions",
        created_at=1732400347.0,
    )


def test_parse_full_job_with_extra_fields() -> None:
    snap = parse_job(FULL_JOB)
    assert snap == MistralJob(
        id="b1",
        state=JobState.SUCCEEDED,
        raw_status="SUCCESS",
        endpoint="/v1/chat/completions",
        model="mistral-small-latest",
        agent_id=None,
        metadata={"batchd_job": "j1", "n": "3"},
        counts=RequestCounts(total=10, completed=10, succeeded=8, failed=2),
        input_files=("f1", "f2"),
        output_file="o1",
        error_file="e1",
        errors=(
            ProviderJobError("2 lines invalid", 2),
            ProviderJobError("bare string", 1),
            ProviderJobError("m", 1),
        ),
        outputs=({"custom_id": "a", "response": {"status_code": 200, "body": {}}},),
        created_at=1732400347.0,
        started_at=1732400351.0,
        completed_at=1732400376.0,
    )
    assert isinstance(snap.created_at, float)


def test_parse_job_tolerates_missing_and_null_optionals() -> None:
    snap = parse_job(
        {
            "id": "b2",
            "status": "RUNNING",
            "total_requests": None,
            "errors": None,
            "metadata": None,
            "created_at": "2025-01-02T03:04:05Z",
        }
    )
    assert snap.state is JobState.RUNNING
    assert snap.counts == RequestCounts()
    assert snap.metadata == {}
    assert snap.errors == ()
    assert snap.outputs is None
    assert snap.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def test_unknown_status_is_logged_and_non_terminal() -> None:
    with capture_logs() as logs:
        snap = parse_job({**MINIMAL_JOB, "status": "WEIRD"})
    assert (snap.state, snap.raw_status) == (JobState.UNKNOWN, "WEIRD")
    assert [(e["event"], e["log_level"], e["status"]) for e in logs] == [
        ("provider.unknown_status", "warning", "WEIRD")
    ]


def test_known_status_is_not_logged() -> None:
    with capture_logs() as logs:
        parse_job(MINIMAL_JOB)
    assert logs == []


@pytest.mark.parametrize("bad", [None, [], "x", {"status": "QUEUED"}, {"id": ""}, {"id": 5}])
def test_job_without_an_id_is_a_malformed_response(bad: Any) -> None:
    with pytest.raises(ProviderTransient):
        parse_job(bad)


def test_parse_job_page() -> None:
    page = parse_job_page({"data": [MINIMAL_JOB], "object": "list", "total": 87}, 2, 10)
    assert page == JobPage((parse_job(MINIMAL_JOB),), 87, 2, 10)


def test_parse_job_page_without_total_or_data() -> None:
    assert parse_job_page({"object": "list"}, 0, 100) == JobPage((), 0, 0, 100)
    assert parse_job_page({"data": [MINIMAL_JOB]}, 3, 10).total == 31


def test_create_body_matches_the_sdk_captures() -> None:
    files = JobSpec(
        endpoint="/v1/chat/completions",
        input_files=("f1",),
        model="mistral-small-latest",
        metadata={"k": "v"},
    )
    assert json.dumps(create_body(files), separators=(",", ":")) == (
        '{"endpoint":"/v1/chat/completions","input_files":["f1"],'
        '"model":"mistral-small-latest","metadata":{"k":"v"},"timeout_hours":24}'
    )
    inline = MistralJobSpec(
        endpoint="/v1/chat/completions",
        requests=({"body": {"messages": []}, "custom_id": "a"},),
        model="m",
        timeout_hours=48,
    )
    assert json.dumps(create_body(inline), separators=(",", ":")) == (
        '{"endpoint":"/v1/chat/completions","requests":[{"body":{"messages":[]},"custom_id":"a"}],'
        '"model":"m","timeout_hours":48}'
    )


def test_create_body_sends_agent_id() -> None:
    spec = MistralJobSpec(endpoint="/v1/conversations", input_files=("f",), agent_id="ag")
    assert create_body(spec) == {
        "endpoint": "/v1/conversations",
        "input_files": ["f"],
        "agent_id": "ag",
        "timeout_hours": 24,
    }


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec(endpoint="e"),
        MistralJobSpec(endpoint="e", input_files=("f",), requests=({"body": {}},)),
    ],
)
def test_create_body_needs_exactly_one_input(spec: JobSpec) -> None:
    with pytest.raises(ProviderPermanent):
        create_body(spec)


# ---------------------------------------------------------------------------- list queries


def test_default_jobs_query_matches_the_capture() -> None:
    assert encode_query(jobs_query(JobFilter())) == (
        "page=0&page_size=100&created_by_me=false&order_by=-created"
    )


def test_full_jobs_query_matches_the_capture() -> None:
    filters = MistralJobFilter(
        page=2,
        page_size=10,
        model="m",
        agent_id="ag",
        metadata={"job_type": "testing", "x": "y"},
        created_after=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp(),
        created_by_me=True,
        states=(JobState.RUNNING, JobState.PENDING),
        order_by="created",
    )
    assert encode_query(jobs_query(filters)) == (
        "page=2&page_size=10&model=m&agent_id=ag&job_type=testing&x=y"
        "&created_after=2025-01-02T03%3A04%3A05Z&created_by_me=true&status=RUNNING"
        "&status=QUEUED&order_by=created"
    )


def test_created_after_is_floored_to_the_second() -> None:
    ts = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() + 0.9
    assert ("created_after", "2025-01-02T03:04:05Z") in jobs_query(JobFilter(created_after=ts))


def test_metadata_key_colliding_with_a_parameter_is_refused() -> None:
    with pytest.raises(ProviderPermanent):
        jobs_query(JobFilter(metadata={"status": "x"}))


def test_files_query_matches_the_capture() -> None:
    query = FileQuery(
        page=1,
        page_size=5,
        sample_types=("batch_result", "batch_error"),
        search="abc",
        purpose="batch",
        mimetypes=("application/jsonl",),
    )
    assert encode_query(files_query(query)) == (
        "page=1&page_size=5&include_total=true&sample_type=batch_result&sample_type=batch_error"
        "&search=abc&purpose=batch&mimetypes=application%2Fjsonl"
    )
    assert encode_query(files_query(FileQuery(sources=("upload",), include_total=False))) == (
        "page=0&page_size=100&include_total=false&source=upload"
    )


# ---------------------------------------------------------------------------- files

FILE = {
    "id": "f1",
    "object": "file",
    "bytes": 1769058,
    "created_at": 1732400347,
    "filename": "file.jsonl",
    "purpose": "batch",
    "sample_type": "batch_request",
    "source": "upload",
    "num_lines": 10,
    "mimetype": "application/jsonl",
    "extra": 1,
}


def test_parse_file() -> None:
    assert parse_file(FILE) == MistralFile(
        id="f1",
        filename="file.jsonl",
        size_bytes=1769058,
        created_at=1732400347.0,
        purpose="batch",
        sample_type="batch_request",
        source="upload",
        num_lines=10,
        mimetype="application/jsonl",
        deleted=False,
    )


def test_parse_file_tolerates_null_bytes_and_reads_deleted() -> None:
    ref = parse_file({"id": "f2", "bytes": None, "deleted": True})
    assert (ref.size_bytes, ref.filename, ref.num_lines, ref.deleted) == (0, "", None, True)


def test_parse_file_page() -> None:
    page = parse_file_page({"data": [FILE], "object": "list", "total": None}, FileQuery(page=3))
    assert (len(page.files), page.total, page.page) == (1, None, 3)


def test_parse_signed_url() -> None:
    assert parse_signed_url({"url": "https://blob/x?sig=1"}) == "https://blob/x?sig=1"
    with pytest.raises(ProviderTransient):
        parse_signed_url({"url": None})


# ---------------------------------------------------------------------------- paging rules


@pytest.mark.parametrize(
    ("page", "size", "received", "total", "expected"),
    [
        (0, 100, 100, 250, 1),
        (1, 100, 100, 250, 2),
        (2, 100, 50, 250, None),  # (2+1)*100 >= 250
        (0, 100, 100, 100, None),  # exactly total
        (0, 100, 0, 250, None),  # empty page although total says more
        (0, 10, 10, None, 1),  # no total: a full page may have a successor
        (1, 10, 3, None, None),  # no total: a short page is the last
        (5, 10, 10, 1000, 6),
    ],
)
def test_next_page(
    page: int, size: int, received: int, total: int | None, expected: int | None
) -> None:
    assert next_page(page, size, received, total) == expected


def test_page_is_repeat() -> None:
    assert page_is_repeat(["a", "b"], {"a", "b", "c"})
    assert not page_is_repeat(["a", "d"], {"a", "b"})
    assert not page_is_repeat([], {"a"})


# ---------------------------------------------------------------------------- result lines

OK_LINE = (
    b'{"id":"0-61c1","custom_id":"0","response":{"status_code":200,"body":{"object":'
    b'"chat.completion","choices":[]}},"error":null}'
)


def test_parse_ok_line() -> None:
    line = parse_result_line(OK_LINE)
    assert line == ResultLine("0", 200, {"object": "chat.completion", "choices": []}, None)
    assert line.ok


@pytest.mark.parametrize(
    "error",
    [{"message": "bad", "code": "x"}, "a bare string error", None],
    ids=["object", "string", "null"],
)
def test_error_shapes(error: Any) -> None:
    raw = json.dumps(
        {
            "custom_id": "7",
            "response": {"status_code": 400, "body": {"object": "error", "message": "bad"}},
            "error": error,
        }
    ).encode()
    line = parse_result_line(raw)
    assert (line.custom_id, line.status_code, line.error) == ("7", 400, error)
    assert not line.ok


def test_error_with_200_is_not_ok() -> None:
    raw = b'{"custom_id":"1","response":{"status_code":200,"body":{}},"error":"oops"}'
    assert not parse_result_line(raw).ok


@pytest.mark.parametrize(
    "raw",
    [
        b'{"custom_id":"1","error":{"message":"m"}}',
        b'{"custom_id":"1","response":null}',
        b'{"custom_id":"1","response":"weird"}',
    ],
)
def test_missing_response_is_tolerated(raw: bytes) -> None:
    line = parse_result_line(raw)
    assert (line.custom_id, line.status_code, line.body) == ("1", None, None)
    assert not line.ok


def test_numeric_custom_id_and_string_status() -> None:
    line = parse_result_line(b'{"custom_id":5,"response":{"status_code":"201","body":1}}')
    assert (line.custom_id, line.status_code, line.body) == ("5", 201, 1)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"response":{}}',
        b'{"custom_id":null}',
        b'{"custom_id":""}',
        b"\xff\xfe",
        b'{"custom_id":"1","n":' + b"1" * 5000 + b"}",
        b"[" * 100_000,
    ],
)
def test_bad_lines_are_permanent_errors(raw: bytes) -> None:
    with pytest.raises(ProviderPermanent):
        parse_result_line(raw)
