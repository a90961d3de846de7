"""``batchd remote`` in-process (``batchd.cli.run``) against an emulator running in a thread:
every command and parameter, exit codes, ``--json`` output, one-line errors."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchd.cli import run
from batchd.emulator import Emulator, serve
from batchd.providers import mistral_wire as wire
from tests.integration.providers.conftest import KEY, chat_lines, emulator_config


@dataclass
class Threaded:
    emu: Emulator
    loop: asyncio.AbstractEventLoop

    def finish_all(self) -> None:
        """Advance emulated time far enough for every job to end, and wait for the files."""
        for _ in range(3):
            self.emu.advance(3600)
            asyncio.run_coroutine_threadsafe(self.emu.settle(), self.loop).result(10)


@pytest.fixture
def emu() -> Iterator[Threaded]:
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["stop"] = asyncio.Event()
        async with serve(emulator_config()) as emulator:
            box["threaded"] = Threaded(emulator, asyncio.get_running_loop())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    threaded: Threaded = box["threaded"]
    yield threaded
    threaded.loop.call_soon_threadsafe(box["stop"].set)
    thread.join(10)


@pytest.fixture
def cli(emu: Threaded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)

    def call(*argv: str, expect: int = 0, json_out: bool = True) -> Any:
        extra = ["--json"] if json_out else []
        code = run(["remote", *argv, "--base-url", emu.emu.url, *extra])
        out, err = capsys.readouterr()
        assert code == expect, (code, err)
        if expect != 0:
            assert len(err.strip().splitlines()) == 1, err  # one clear line
            return err
        return json.loads(out) if json_out else out

    return call


def test_files_commands(cli, tmp_path: Path) -> None:
    content = chat_lines(5)
    (tmp_path / "local.jsonl").write_bytes(content)
    ref = cli("files", "upload", str(tmp_path / "local.jsonl"), "--name", "cli-1.jsonl")
    assert (ref["filename"], ref["bytes"], ref["purpose"], ref["num_lines"]) == (
        "cli-1.jsonl",
        len(content),
        "batch",
        5,
    )
    assert cli("files", "get", ref["id"])["id"] == ref["id"]

    cli("files", "upload", str(tmp_path / "local.jsonl"), "--name", "cli-2.jsonl")
    page = cli(
        "files",
        "list",
        "--search",
        "cli-",
        "--purpose",
        "batch",
        "--sample-type",
        "batch_request",
        "--source",
        "upload",
        "--mimetype",
        "application/jsonl",
        "--page",
        "1",
        "--page-size",
        "1",
    )
    assert (page["total"], page["page"], page["page_size"], len(page["data"])) == (2, 1, 1, 1)
    walked = cli("files", "list", "--search", "cli-", "--page-size", "1", "--all")
    assert sorted(f["filename"] for f in walked["data"]) == ["cli-1.jsonl", "cli-2.jsonl"]
    assert len(cli("files", "list", "--no-total", "--search", "cli-")["data"]) == 2

    done = cli("files", "download", ref["id"], str(tmp_path / "back.jsonl"))
    assert done["bytes"] == len(content)
    assert (tmp_path / "back.jsonl").read_bytes() == content
    assert cli("files", "url", ref["id"], "--expiry-hours", "2")["url"].startswith("http")

    assert cli("files", "delete", ref["id"]) == {"id": ref["id"], "object": "file", "deleted": True}
    cli("files", "get", ref["id"], expect=1)


def test_files_upload_options_reach_the_provider(cli, emu: Threaded, tmp_path: Path) -> None:
    (tmp_path / "local.jsonl").write_bytes(chat_lines(1))
    plain = cli("files", "upload", str(tmp_path / "local.jsonl"))
    assert (plain["purpose"], plain["visibility"], plain["expires_at"]) == (
        "batch",
        "workspace",
        None,
    )
    ref = cli(
        "files",
        "upload",
        str(tmp_path / "local.jsonl"),
        "--purpose",
        "fine-tune",
        "--visibility",
        "user",
        "--expiry",
        "48",
    )
    assert (ref["purpose"], ref["visibility"]) == ("fine-tune", "user")
    (record,) = [f for f in emu.emu.files() if f["id"] == ref["id"]]
    assert (record["purpose"], record["visibility"]) == ("fine-tune", "user")
    assert record["expires_at"] == record["created_at"] + 48 * 3600
    cli("files", "upload", str(tmp_path / "local.jsonl"), "--purpose", "nope", expect=1)


def test_inline_requests_without_custom_id_get_their_index(
    cli, emu: Threaded, tmp_path: Path
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    lines = [{"body": body}, {"custom_id": None, "body": body}, {"custom_id": "x", "body": body}]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n\n" for line in lines))  # blank lines skipped
    job = cli(
        "create", "--endpoint", "/v1/chat/completions", "--model", "m", "--requests", str(path)
    )
    sent = (emu.emu.data_dir / f".inline-{job['id']}.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in sent] == ["0", "1", "x"]  # as sent
    emu.finish_all()
    outputs = cli("get", job["id"])["outputs"]
    parsed = [wire.parse_result_line(json.dumps(o).encode()) for o in outputs]
    assert sorted((r.custom_id, r.ok) for r in parsed) == [("0", True), ("1", True), ("x", True)]


def test_job_commands(cli, emu: Threaded, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(chat_lines(3))
    job = cli(
        "create",
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        "m",
        "--input-file",
        str(tmp_path / "in.jsonl"),
        "--metadata",
        "batchd_job=x",
        "--metadata",
        "team=a",
        "--timeout-hours",
        "2",
    )
    assert (job["state"], job["status"], job["model"]) == ("pending", "QUEUED", "m")
    assert job["metadata"] == {"batchd_job": "x", "team": "a"}
    by_id = cli(
        "create",
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        "m",
        "--file-id",
        job["input_files"][0],
    )
    (tmp_path / "requests.jsonl").write_text(
        json.dumps({"custom_id": "r", "body": {"messages": [{"role": "user", "content": "hi"}]}})
        + "\n"
    )
    inline = cli(
        "create",
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        "m",
        "--requests",
        str(tmp_path / "requests.jsonl"),
    )
    agent = cli(
        "create",
        "--endpoint",
        "/v1/conversations",
        "--agent-id",
        "ag-1",
        "--requests",
        str(tmp_path / "requests.jsonl"),
    )
    assert agent["agent_id"] == "ag-1"

    listed = cli(
        "list",
        "--status",
        "QUEUED",
        "--model",
        "m",
        "--metadata",
        "team=a",
        "--created-after",
        "2000-01-01T00:00:00Z",
        "--created-by-me",
        "--order-by",
        "created",
        "--page",
        "0",
        "--page-size",
        "10",
    )
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    assert [j["id"] for j in cli("list", "--agent-id", "ag-1")["data"]] == [agent["id"]]
    everything = cli("list", "--all", "--page-size", "1")
    assert {j["id"] for j in everything["data"]} == {
        job["id"],
        by_id["id"],
        inline["id"],
        agent["id"],
    }

    cancelled = cli("cancel", by_id["id"])
    assert (cancelled["state"], cancelled["status"]) == ("cancelling", "CANCELLATION_REQUESTED")
    emu.finish_all()
    assert cli("list", "--status", "succeeded,CANCELLED")["total"] == 4
    assert cli("get", job["id"])["state"] == "succeeded"
    assert [o["custom_id"] for o in cli("get", inline["id"], "--inline")["outputs"]] == ["r"]
    assert "outputs" not in cli("get", inline["id"], "--no-inline")

    assert cli("delete", job["id"]) == {"id": job["id"], "object": "batch", "deleted": True}
    cli("get", job["id"], expect=1)


def test_human_output_is_a_table(cli, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(chat_lines(1))
    job = cli(
        "create",
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        "m",
        "--input-file",
        str(tmp_path / "in.jsonl"),
    )
    table = cli("list", json_out=False)
    header = table.splitlines()[0].split()
    assert header == ["ID", "STATUS", "STATE", "MODEL", "ENDPOINT", "DONE", "FAILED", "CREATED"]
    assert table.splitlines()[1].split()[:3] == [job["id"], "QUEUED", "pending"]
    shown = cli("get", job["id"], json_out=False)
    assert shown.splitlines()[0].split() == ["id", job["id"]]


def test_piped_lists_are_tab_separated_with_the_count_on_stderr(
    emu: Threaded,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """As every list of batchd: piped, a header line and tab-separated rows (no padding), and
    the "N shown of M" note for people on stderr, so stdout is only data."""
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    (tmp_path / "in.jsonl").write_bytes(chat_lines(1))
    base = ["--base-url", emu.emu.url]
    assert (
        run(["remote", "files", "upload", str(tmp_path / "in.jsonl"), "--name", "a.jsonl", *base])
        == 0
    )
    capsys.readouterr()
    assert run(["remote", "files", "list", *base]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()
    assert header == "ID\tFILENAME\tBYTES\tPURPOSE\tTYPE\tSOURCE\tLINES\tCREATED"
    assert row.split("\t")[1:4] == ["a.jsonl", str(len(chat_lines(1))), "batch"]
    assert "1 shown of 1" in err


def test_provider_errors_are_one_line_and_exit_1(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = str(uuid.uuid4())
    cli("get", missing, expect=1)
    cli("cancel", missing, expect=1)
    cli("files", "download", missing, str(tmp_path / "x"), expect=1)
    (tmp_path / "in.jsonl").write_bytes(chat_lines(1))
    err = cli(
        "create",
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        "m",
        "--input-file",
        str(tmp_path / "in.jsonl"),
        "--timeout-hours",
        "500",
        expect=1,
    )
    assert "timeout_hours" in err and "uploaded input files kept" in err
    monkeypatch.setenv("MISTRAL_API_KEY", "wrong-key-123456")
    err = cli("list", expect=1)
    assert "wrong-key-123456" not in err


def test_configured_provider(
    emu: Threaded,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = tmp_path / "batchd.toml"
    config.write_text(
        f"""
[daemon]
data_dir = "{tmp_path / "data"}"

[providers.local]
kind = "mistral"
base_url = "{emu.emu.url}"
api_key_env = "LOCAL_KEY"
requests_per_second = 0

[[routes]]
name = "default"
spool = "spool"
provider = "local"
endpoint = "/v1/chat/completions"
"""
    )
    monkeypatch.setenv("LOCAL_KEY", KEY)
    assert run(["remote", "list", "--config", str(config), "--provider", "local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0
    monkeypatch.setenv("BATCHD_CONFIG", str(config))
    assert run(["remote", "files", "list", "--json"]) == 0  # the default provider
    assert json.loads(capsys.readouterr().out)["data"] == []
    assert run(["remote", "list", "--provider", "nope"]) == 3
