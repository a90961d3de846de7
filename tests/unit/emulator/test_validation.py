"""FastAPI-style validation helpers and query decoding."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from batchd.emulator.validation import (
    JobsQuery,
    metadata_filter,
    parse_json_body,
    query_input,
    validate_path_id,
    validate_query,
)
from batchd.emulator.wire import ApiError


def test_scalars_take_the_last_value_and_lists_collect() -> None:
    query = MultiDict([("page", "1"), ("page", "2"), ("status", "QUEUED"), ("status", "RUNNING")])
    assert query_input(query, JobsQuery) == {"page": "2", "status": ["QUEUED", "RUNNING"]}
    parsed = validate_query(query, JobsQuery)
    assert parsed.page == 2 and [s.value for s in parsed.status or []] == ["QUEUED", "RUNNING"]


def test_metadata_from_exploded_keys_and_json() -> None:
    query = MultiDict(
        [
            ("page", "0"),
            ("created_by_me", "false"),
            ("job_type", "testing"),
            ("x", "y"),
            ("metadata", '{"a": "b", "n": 1}'),
        ]
    )
    assert metadata_filter(query) == {"a": "b", "n": "1", "job_type": "testing", "x": "y"}


@pytest.mark.parametrize("raw", ["{x", "[1]"])
def test_bad_metadata_json_is_422(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        metadata_filter(MultiDict([("metadata", raw)]))
    assert info.value.status == 422
    assert info.value.body["detail"][0]["loc"] == ["query", "metadata"]  # type: ignore[index]


def test_json_body_errors() -> None:
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw, kind in ((b"  ", "missing"), (b'{"a": }', "json_invalid"), (b"\xff", "json_invalid")):
        with pytest.raises(ApiError) as info:
            parse_json_body(raw)
        assert info.value.body["detail"][0]["type"] == kind  # type: ignore[index]


def test_path_ids_are_uuids() -> None:
    canonical = "0b0e1f8e-6f8d-4a36-9f0e-0c3f7e3b8d11"
    assert validate_path_id("job_id", canonical.upper(), 422) == canonical
    with pytest.raises(ApiError) as info:
        validate_path_id("job_id", "nope", 422)
    assert info.value.status == 422
    with pytest.raises(ApiError) as info:
        validate_path_id("job_id", "nope", 404)
    assert (info.value.status, info.value.body) == (404, {"detail": "Not Found"})
