"""Pure parts of the store: canonical JSON, event bodies, row mapping, migration files."""

from __future__ import annotations

import json

import pytest

from batchd.errors import StoreError
from batchd.models import Job, JobState, RequestCounts, ResultState
from batchd.store import rules
from batchd.store.base import EventSpec
from batchd.store.migrate import Migration, check_sequence, load_migrations, split_statements
from batchd.store.sqlite_rows import JOB_COLUMNS, job_from_row, job_params

NOW = 1_700_000_000.0


def test_canonical_json_is_sorted_compact_and_utf8() -> None:
    assert rules.canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object(), {"a": b"x"}])
def test_canonical_json_refuses_what_is_not_json(value: object) -> None:
    with pytest.raises(StoreError):
        rules.canonical_json(value)


def test_build_event_payload_is_the_webhook_body() -> None:
    new = rules.build_event(
        EventSpec("batch.succeeded", {"ids": ("a", "b"), "n": 1}), now=NOW, job_id="job_1"
    )
    assert new.event.id.startswith("evt_")
    assert new.event.data == {"ids": ["a", "b"], "n": 1}  # as it reads back from storage
    assert (new.event.job_id, new.event.submission_id, new.event.created_at) == ("job_1", None, NOW)
    assert new.data_json == '{"ids":["a","b"],"n":1}'
    assert json.loads(new.payload) == {
        "type": "batch.succeeded",
        "timestamp": "2023-11-14T22:13:20Z",
        "data": {"ids": ["a", "b"], "n": 1},
    }
    assert new.payload == (
        b'{"data":{"ids":["a","b"],"n":1},"timestamp":"2023-11-14T22:13:20Z",'
        b'"type":"batch.succeeded"}'
    )


def full_job() -> Job:
    return Job(
        id="job_1",
        submission_id="sub_1",
        chunk_index=3,
        provider="mistral",
        state=JobState.SUCCEEDED,
        line_start=30,
        line_count=10,
        byte_count=999,
        raw_status="SUCCESS",
        provider_job_id="p-1",
        input_file_id="f-in",
        output_file_id="f-out",
        error_file_id="f-err",
        counts=RequestCounts(total=10, completed=9, succeeded=8, failed=1),
        errors=({"message": "x"},),
        result_state=ResultState.COLLECTED,
        cancel_requested=True,
        attempts=2,
        next_attempt_at=NOW + 1,
        poll_interval_s=30.0,
        last_error="boom",
        created_at=NOW,
        updated_at=NOW + 2,
        provider_created_at=NOW + 3,
        started_at=NOW + 4,
        completed_at=NOW + 5,
        terminal_at=NOW + 6,
        collected_at=NOW + 7,
    )


def test_a_job_row_maps_back_to_the_same_job() -> None:
    job = full_job()
    params = job_params(job)
    assert set(params) == set(JOB_COLUMNS)
    row = tuple(params[c] for c in JOB_COLUMNS)
    assert job_from_row(row) == job


def test_split_statements_handles_comments_and_triggers() -> None:
    script = """
-- a comment; with a semicolon
CREATE TABLE t (x INTEGER); -- trailing note
CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
    UPDATE t SET x = x + 1;
    DELETE FROM t WHERE x > 9;
END;
-- the end
"""
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_split_statements_refuses_an_unfinished_statement() -> None:
    with pytest.raises(StoreError):
        split_statements("CREATE TABLE t (x INTEGER);\nCREATE TABLE u (y")


def test_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.statements for m in migrations)
    assert migrations[0].name == "initial"


def test_a_gap_in_migrations_is_refused() -> None:
    with pytest.raises(StoreError):
        check_sequence([Migration(1, "a", ()), Migration(3, "c", ())])


def test_event_strings_are_capped_so_payloads_stay_thin() -> None:
    page = "<html>" + "x" * 5000
    built = rules.build_event(
        EventSpec("batch.failed", {"error": page, "problems": [page], "n": 3, "ok": "short"}),
        now=1_700_000_000.0,
    )
    data = built.event.data
    assert len(data["error"]) == rules.MAX_EVENT_STRING and data["error"].endswith("…")
    assert data["problems"] == [data["error"]]
    assert (data["n"], data["ok"]) == (3, "short")
    assert len(built.payload) < 2 * rules.MAX_EVENT_STRING + 200
