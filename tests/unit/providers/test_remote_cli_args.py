"""``batchd remote`` argument parsing and provider selection (no network)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchd.cli import build_parser, run
from batchd.cli._remote_ops import read_requests
from batchd.cli.remote import job_states, metadata_pair, provider_settings, timestamp
from batchd.errors import ConfigError, UsageError
from batchd.models import JobState


def test_metadata_pair() -> None:
    assert metadata_pair("k=v=w") == ("k", "v=w")
    assert metadata_pair("k=") == ("k", "")
    for bad in ("k", "=v"):
        with pytest.raises(argparse.ArgumentTypeError):
            metadata_pair(bad)


def test_timestamp() -> None:
    expected = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert timestamp("2025-01-02T03:04:05Z") == expected
    assert timestamp("2025-01-02T03:04:05") == expected  # naive is UTC
    assert timestamp("2025-01-02T04:04:05+01:00") == expected
    assert timestamp(str(expected)) == expected
    for bad in ("yesterday", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            timestamp(bad)


def test_job_states_accept_both_vocabularies() -> None:
    assert job_states("RUNNING,queued") == [JobState.RUNNING, JobState.PENDING]
    assert job_states("succeeded") == [JobState.SUCCEEDED]
    assert job_states("TIMEOUT_EXCEEDED") == [JobState.EXPIRED]
    for bad in ("WEIRD", "unknown", "new", "lost"):
        with pytest.raises(argparse.ArgumentTypeError):
            job_states(bad)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["remote", *argv])


def test_list_parses_every_filter() -> None:
    args = parse(
        "list",
        "--status",
        "RUNNING",
        "--status",
        "QUEUED,SUCCESS",
        "--model",
        "m",
        "--metadata",
        "k=v",
        "--metadata",
        "x=y",
        "--created-by-me",
        "--page",
        "2",
        "--page-size",
        "10",
        "--order-by",
        "created",
        "--agent-id",
        "ag",
        "--created-after",
        "2025-01-02T03:04:05Z",
        "--json",
    )
    assert args.status == [[JobState.RUNNING], [JobState.PENDING, JobState.SUCCEEDED]]
    assert args.metadata == [("k", "v"), ("x", "y")]
    assert (args.page, args.page_size, args.order_by, args.json) == (2, 10, "created", True)


def test_files_upload_options() -> None:
    args = build_parser().parse_args(["remote", "files", "upload", "a.jsonl"])
    assert (args.purpose, args.visibility, args.expiry) == ("batch", "workspace", None)
    argv = ["--purpose", "ocr", "--visibility", "user", "--expiry", "3"]
    args = build_parser().parse_args(["remote", "files", "upload", "a.jsonl", *argv])
    assert (args.purpose, args.visibility, args.expiry) == ("ocr", "user", 3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["remote", "files", "upload", "a.jsonl", "--visibility", "all"])


def test_read_requests_numbers_missing_custom_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"body": {}}\n\n{"custom_id": null, "body": {}}\n{"custom_id": "a", "body": {}}\n'
    )
    assert read_requests(path) == (
        {"body": {}, "custom_id": "0"},
        {"custom_id": "1", "body": {}},
        {"custom_id": "a", "body": {}},
    )
    path.write_text('{"body": {}}\n{"custom_id": "0", "body": {}}\n')
    with pytest.raises(UsageError, match="duplicate custom_id"):
        read_requests(path)


def test_create_needs_exactly_one_source() -> None:
    with pytest.raises(SystemExit):
        parse("create", "--endpoint", "/v1/chat/completions")
    with pytest.raises(SystemExit):
        parse("create", "--endpoint", "e", "--file-id", "a", "--requests", "r.jsonl")
    args = parse("create", "--endpoint", "e", "--input-file", "a.jsonl", "--input-file", "b.jsonl")
    assert args.input_file == [Path("a.jsonl"), Path("b.jsonl")]


def test_there_is_no_api_key_flag() -> None:
    with pytest.raises(SystemExit):
        parse("list", "--api-key", "sk-123")


def test_base_url_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", " sk-env \n")
    settings = provider_settings(parse("list", "--base-url", "http://127.0.0.1:9"))
    assert settings.base_url == "http://127.0.0.1:9"
    assert settings.api_key is not None and settings.api_key.reveal() == "sk-env"


def test_base_url_reads_the_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    args = parse("list", "--base-url", "http://x", "--api-key-file", str(key_file))
    settings = provider_settings(args)
    assert settings.api_key is not None and settings.api_key.reveal() == "sk-file"


def test_base_url_without_a_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        provider_settings(parse("list", "--base-url", "http://x"))
    assert run(["remote", "list", "--base-url", "http://127.0.0.1:9"]) == 3


def test_base_url_excludes_provider() -> None:
    with pytest.raises(UsageError):
        provider_settings(parse("list", "--base-url", "http://x", "--provider", "p"))


def test_remote_without_subcommand_is_a_usage_error() -> None:
    assert run(["remote"]) == 2
