"""Schemathesis against a running ``batchd run`` process: every operation of /openapi.json,
with generated parameters and bodies, never answers 500 and always matches the description."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.processes import batchd_argv, child_env
from tests.integration.api.conftest import Setup, write_setup

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402


def _checks() -> list[object]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks

    return [
        not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.response_headers_conformance,
    ]


CHECKS = _checks()


@schemathesis.serializer("application/jsonl")
def _jsonl(ctx: object, value: object) -> bytes:
    """The generated body as bytes (any text: the server must answer it without a 500)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("schema")
    setup = write_setup(tmp)
    log = (tmp / "daemon.log").open("wb")
    proc = subprocess.Popen(
        batchd_argv("run", "--config", str(setup.config)), stdout=log, stderr=log, env=child_env()
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(setup.tcp + "/readyz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "daemon.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield setup
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def api_schema(running: Setup):
    return schemathesis.openapi.from_url(running.tcp + "/openapi.json")


def test_no_500_and_every_answer_matches_the_schema(api_schema, running: Setup) -> None:
    headers = {"Authorization": f"Bearer {running.tokens['admin']}"}
    operations = [
        op
        for op in (result.ok() for result in api_schema.get_all_operations())
        if not op.definition.raw.get("x-streaming")  # never ends: tested in test_submit_flow
    ]
    assert len(operations) >= 11

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(base_url=running.tcp, headers=headers, checks=CHECKS)

        check()


def test_the_log_of_that_run_holds_no_token(running: Setup) -> None:
    text = (Path(running.config).parent / "daemon.log").read_text()
    assert "api.listening" in text
    for token in running.tokens.values():
        assert token not in text
