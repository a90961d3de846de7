"""``batchd emulator`` argument parsing into an ``EmulatorConfig`` (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchd.cli import build_parser
from batchd.cli.emulator_cmd import API_KEYS_ENV, build_config, listen_port
from batchd.emulator import Behaviour, EmulatorConfig, FaultKind, FaultRule, Phase, ProcessingModel
from batchd.errors import UsageError


def parse(*argv: str) -> EmulatorConfig:
    return build_config(build_parser().parse_args(["emulator", *argv]))


def test_defaults() -> None:
    args = build_parser().parse_args(["emulator"])
    assert (args.host, listen_port(args)) == ("127.0.0.1", 8089)
    openai = build_parser().parse_args(["emulator", "--provider", "openai"])
    assert (openai.provider, listen_port(openai)) == ("openai", 8090)
    config = build_config(args)
    assert config.speed == 60 and config.api_keys == () and config.faults.rules == ()
    assert config.processing == ProcessingModel() and config.behaviour == Behaviour()


def test_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(API_KEYS_ENV, "k3, k4")
    config = parse(
        "--api-key",
        "k1",
        "--api-key",
        "k2",
        "--speed",
        "1000",
        "--seed",
        "9",
        "--data-dir",
        str(tmp_path),
        "--fault",
        "429:0.5,retry_after=2",
        "--fault",
        "reset:1,route=POST /v1/batch/jobs,phase=after,limit=1",
        "--processing",
        "queue_s=0.5",
        "--processing",
        "parallelism=7",
        "--behaviour",
        "error_field=string",
        "--behaviour",
        "invalid_id_status=404",
        "--behaviour",
        "stable_created=false",
    )
    assert config.api_keys == ("k1", "k2", "k3", "k4")
    assert (config.speed, config.seed, config.data_dir) == (1000, 9, tmp_path)
    assert config.faults.rules == (
        FaultRule(FaultKind.RATE_LIMIT, 0.5, retry_after_s=2),
        FaultRule(FaultKind.RESET, 1.0, "POST /v1/batch/jobs", Phase.AFTER, limit=1),
    )
    assert config.processing == ProcessingModel(queue_s=0.5, parallelism=7)
    assert config.behaviour == Behaviour(
        error_field="string", invalid_id_status=404, stable_created=False
    )


def test_metadata_filter_behaviour() -> None:
    assert Behaviour().metadata_filter == "honour"
    config = parse("--behaviour", "metadata_filter=ignore")
    assert config.behaviour == Behaviour(metadata_filter="ignore")


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault", "teapot"],
        ["--processing", "warp=9"],
        ["--processing", "parallelism=0"],
        ["--behaviour", "error_field=xml"],
        ["--behaviour", "metadata_filter=sometimes"],
        ["--behaviour", "noequals"],
        ["--speed", "0"],
        ["--speed", "inf"],  # the clock would be inf and every create a 500
        ["--speed", "nan"],
        ["--speed", "1e400"],
        ["--speed", "1e7"],
        ["--processing", "queue_s=nan"],
        ["--processing", "request_s=inf"],
        ["--processing", "finalize_s=-1"],
    ],
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(*argv)


def test_issue_13_options() -> None:
    config = parse(
        "--behaviour",
        "outputs=null",
        "--fault",
        "short_results:1,fraction=0.9,limit=1",
        "--fault",
        "short_counts:0.5,route=/v1/ocr",
    )
    assert config.behaviour.outputs == "null"
    assert config.faults.rules == (
        FaultRule(FaultKind.SHORT_RESULTS, fraction=0.9, limit=1),
        FaultRule(FaultKind.SHORT_COUNTS, 0.5, "/v1/ocr"),
    )
    with pytest.raises(UsageError, match="outputs"):
        parse("--behaviour", "outputs=sometimes")
    with pytest.raises(UsageError, match="delay_s"):
        parse("--fault", "latency:1,delay=inf")


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:  # argparse: exit 2 and one line, not a traceback
        build_parser().parse_args(["emulator", "--port", port])
    assert info.value.code == 2
    assert "is not a port (0 to 65535)" in capsys.readouterr().err
    assert build_parser().parse_args(["emulator", "--port", "65535"]).port == 65535
