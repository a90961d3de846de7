from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

from batchd.emulator.faults import (
    FaultConfig,
    FaultInjector,
    FaultKind,
    FaultRule,
    Phase,
    fault_config_from_json,
    parse_fault_spec,
)
from batchd.emulator.generate import GenerationPlan
from batchd.emulator.results import with_fault


def test_parse_fault_spec_full() -> None:
    rule = parse_fault_spec("reset:0.25,route=POST /v1/batch/jobs,phase=after,limit=1")
    assert rule == FaultRule(
        FaultKind.RESET,
        probability=0.25,
        route="POST /v1/batch/jobs",
        phase=Phase.AFTER,
        limit=1,
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("429", FaultRule(FaultKind.RATE_LIMIT)),
        ("429:0.1,retry_after=3", FaultRule(FaultKind.RATE_LIMIT, 0.1, retry_after_s=3)),
        ("latency:1,delay=2.5", FaultRule(FaultKind.LATENCY, delay_s=2.5)),
        ("truncate:0.5,fraction=0.3", FaultRule(FaultKind.TRUNCATE, 0.5, fraction=0.3)),
        ("502, route = /v1/files", FaultRule(FaultKind.BAD_GATEWAY, route="/v1/files")),
    ],
)
def test_parse_fault_spec_variants(spec: str, expected: FaultRule) -> None:
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["teapot", "429:2", "429:x", "429,colour=red", "429,route", "truncate,fraction=1"]
)
def test_parse_fault_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_fault_spec(spec)


def test_route_patterns() -> None:
    default = FaultRule(FaultKind.INTERNAL)
    assert default.matches("GET /v1/files")
    assert not default.matches("GET /blob/{file_id}")
    exact = FaultRule(FaultKind.INTERNAL, route="POST /v1/batch/jobs")
    assert exact.matches("POST /v1/batch/jobs")
    assert not exact.matches("GET /v1/batch/jobs")
    assert not exact.matches("POST /v1/batch/jobs/{job_id}/cancel")
    any_method = FaultRule(FaultKind.INTERNAL, route="/v1/batch/jobs*")
    assert any_method.matches("POST /v1/batch/jobs/{job_id}/cancel")
    assert any_method.matches("GET /v1/batch/jobs")


def _decisions(injector: FaultInjector, n: int) -> list[bool]:
    return [injector.decide("GET /v1/files", Phase.BEFORE) is not None for _ in range(n)]


def test_decisions_depend_only_on_seed_rule_and_count() -> None:
    config = FaultConfig((FaultRule(FaultKind.INTERNAL, probability=0.3),), seed=5)
    first = _decisions(FaultInjector(config), 200)
    assert first == _decisions(FaultInjector(config), 200)
    assert 30 < sum(first) < 90
    assert first != _decisions(FaultInjector(FaultConfig(config.rules, seed=6)), 200)
    # the emulator's seed is the default
    assert first == _decisions(FaultInjector(FaultConfig(config.rules), default_seed=5), 200)


def test_phases_limits_and_truncate_eligibility() -> None:
    injector = FaultInjector(
        FaultConfig(
            (
                FaultRule(FaultKind.TRUNCATE),
                FaultRule(FaultKind.RESET, phase=Phase.AFTER, limit=1),
            ),
            seed=1,
        )
    )
    assert injector.decide("GET /v1/files", Phase.BEFORE) is None
    assert injector.decide("GET /v1/files", Phase.AFTER) is not None
    assert injector.decide("GET /v1/files", Phase.AFTER) is None  # limit reached
    rule = injector.decide("GET /v1/files/{file_id}/content", None)
    assert rule is not None and rule.kind is FaultKind.TRUNCATE
    assert injector.injected == {"reset": 1, "truncate": 1}
    injector.set(injector.config)
    assert injector.decide("GET /v1/files", Phase.AFTER) is not None  # counters restart


def test_config_json_round_trip() -> None:
    config = FaultConfig((FaultRule(FaultKind.LATENCY, 0.5, "GET /v1/files", Phase.AFTER),), 9)
    assert fault_config_from_json(config.to_json()) == config
    with pytest.raises(ValidationError):
        fault_config_from_json({"rules": [{"kind": "429", "phase": "during"}]})


def test_result_faults_fire_for_result_files_only() -> None:
    short = parse_fault_spec("short_results:1,route=/v1/ocr,fraction=0.25,limit=1")
    assert short == FaultRule(FaultKind.SHORT_RESULTS, route="/v1/ocr", fraction=0.25, limit=1)
    counts = FaultRule(FaultKind.SHORT_COUNTS)
    injector = FaultInjector(FaultConfig((short, counts), seed=1))
    for key in ("POST /v1/batch/jobs", "GET /v1/files/{file_id}/content"):
        assert injector.decide(key, Phase.BEFORE) is None  # never a request fault
        assert injector.decide(key, Phase.AFTER) is None
        assert injector.decide(key, None) is None
    assert injector.decide_results("/v1/ocr") is short
    assert injector.decide_results("/v1/ocr") is counts  # the first rule's limit is used up
    assert injector.decide_results("/v1/chat/completions") is counts
    assert injector.injected == {"short_results": 1, "short_counts": 2}


def test_a_request_fault_never_fires_for_result_files() -> None:
    injector = FaultInjector(FaultConfig((FaultRule(FaultKind.INTERNAL),), seed=1))
    assert injector.decide_results("/v1/chat/completions") is None


def test_with_fault_cuts_the_lines_or_the_count() -> None:
    plan = GenerationPlan(
        endpoint="/v1/chat/completions",
        model="m",
        sources=(),
        done=10,
        out_path=Path("out"),
        err_path=Path("err"),
        error_field="object",
    )
    assert with_fault(plan, None) == (plan, None)
    short = with_fault(plan, FaultRule(FaultKind.SHORT_RESULTS, fraction=0.3))
    assert short == (dataclasses.replace(plan, done=3), None)
    assert with_fault(plan, FaultRule(FaultKind.SHORT_COUNTS, fraction=0.5)) == (plan, 5)
