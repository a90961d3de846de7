"""The command line around the daemon, as real processes: exit code 3 for a bad configuration
(naming the file and the key), ``batchd check`` exit codes, one daemon per data folder, and
``batchd jobs list --json`` / ``jobs show --json`` over a real database."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from batchd.models import SubmissionState
from tests.acceptance.harness import Harness, RouteSpec, chat_lines

EXIT_FAILURE = 1
EXIT_CONFIG = 3


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_run_with_an_invalid_configuration_exits_3_naming_file_and_key(
    harness: Harness,
) -> None:
    harness.start_emulator()
    harness.configure([RouteSpec("chat")], track={"poll_initial_s": -1})
    run = harness.spawn()
    code = await harness.wait_exit(timeout_s=20)
    assert code == EXIT_CONFIG
    err = run.stderr_path.read_text()
    assert f"{harness.config_path}: track.poll_initial_s:" in err
    assert not harness.listener.states()  # never READY

    harness.config_path.write_text("[daemon\n")
    code, _, err = await harness.cli("run", "--config", str(harness.config_path))
    assert code == EXIT_CONFIG
    assert f"{harness.config_path}: invalid TOML" in err


async def test_check_exits_0_when_the_provider_answers_and_1_when_it_does_not(
    harness: Harness,
) -> None:
    emulator = harness.start_emulator()
    harness.configure([RouteSpec("chat")])
    code, out, err = await harness.cli("check", "--config", str(harness.config_path))
    assert code == 0, err
    assert emulator.url in out
    assert not (harness.data_dir / "batchd.sqlite3").exists()  # check never creates it
    code, _, err = await harness.cli("jobs", "list", "--config", str(harness.config_path))
    assert code == EXIT_FAILURE  # no database yet: an error, and no stray thread traceback
    assert "no batchd database" in err and "Traceback" not in err

    unreachable = f"http://127.0.0.1:{free_port()}"
    harness.configure([RouteSpec("chat")], provider={"base_url": unreachable, "read_retries": 0})
    code, _, err = await harness.cli("check", "--config", str(harness.config_path))
    assert code == EXIT_FAILURE
    assert "provider mistral" in err

    code, _, err = await harness.cli(
        "check", "--config", str(harness.config_path), env={"MISTRAL_API_KEY": ""}
    )
    assert code == EXIT_CONFIG  # no key at all is a configuration problem


async def test_a_second_daemon_on_the_same_data_dir_is_refused(harness: Harness) -> None:
    harness.start_emulator()
    harness.configure([RouteSpec("chat")])
    first = await harness.start()
    code, _, err = await harness.cli("run", "--config", str(harness.config_path), timeout_s=30)
    assert code == EXIT_CONFIG
    assert "already running" in err
    assert first.returncode is None  # the first one carries on
    harness.drop("chat", "after.jsonl", chat_lines(1))
    await harness.wait_done("after.jsonl")
    await harness.stop()


async def test_jobs_list_and_show_read_the_real_database(harness: Harness) -> None:
    emulator = harness.start_emulator()
    harness.configure([RouteSpec("chat")], provider={"max_requests_per_job": 2})
    await harness.start()
    harness.drop("chat", "listed.jsonl", chat_lines(3, "l"))
    harness.drop("chat", "broken.jsonl", "not json\n")
    done = await harness.wait_done("listed.jsonl")
    broken = await harness.wait_submission("broken.jsonl", [SubmissionState.REJECTED])
    config = str(harness.config_path)

    code, out, err = await harness.cli("jobs", "list", "--json", "--config", config)
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)["submissions"]}
    assert set(rows) == {"listed.jsonl", "broken.jsonl"}
    listed = rows["listed.jsonl"]
    assert {k: listed[k] for k in ("id", "state", "outcome", "jobs", "requests", "completed")} == {
        "id": done.id,
        "state": "done",
        "outcome": "succeeded",
        "jobs": 2,
        "requests": 3,
        "completed": 3,
    }
    assert listed["job_states"] == ["succeeded"]
    assert (listed["succeeded"], listed["failed"], listed["missing"]) == (3, 0, 0)
    assert listed["usage"]["total_tokens"] > 0
    assert listed["provider_job_ids"] == [j.provider_job_id for j in await harness.jobs(done.id)]
    assert listed["results_dir"] == done.results_dir
    assert (rows["broken.jsonl"]["state"], rows["broken.jsonl"]["reason"]) == (
        "rejected",
        broken.reason,
    )

    code, out, _ = await harness.cli(
        "jobs", "list", "--json", "--state", "done", "--config", config
    )
    assert code == 0
    assert [row["name"] for row in json.loads(out)["submissions"]] == ["listed.jsonl"]

    jobs = await harness.jobs(done.id)
    # The uploaded inputs were deleted at the provider once the results were written; the
    # provider's result files stay (delete_result_files = false by default).
    held = emulator.file_ids(harness.api_key)
    assert not {j.input_file_id for j in jobs} & held
    assert {j.output_file_id for j in jobs} <= held
    code, out, err = await harness.cli("jobs", "show", "--json", "--config", config, done.id)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["id"], shown["sha256"], shown["provider"]) == (done.id, done.sha256, "mistral")
    assert (shown["failed"], shown["missing"], shown["usage"]) == (0, 0, listed["usage"])
    assert [
        (j["id"], j["chunk_index"], j["provider_job_id"], j["state"]) for j in shown["jobs"]
    ] == [(j.id, j.chunk_index, j.provider_job_id, "succeeded") for j in jobs]

    # By provider job id: the submission with that one job.
    code, out, _ = await harness.cli(
        "jobs", "show", "--json", "--config", config, jobs[1].provider_job_id or ""
    )
    assert code == 0
    assert [j["id"] for j in json.loads(out)["jobs"]] == [jobs[1].id]

    code, _, err = await harness.cli("jobs", "show", "--config", config, "sub_nope")
    assert code == EXIT_FAILURE
    await harness.stop()


async def test_submit_wait_exits_by_outcome_and_a_second_copy_is_refused(harness: Harness) -> None:
    harness.start_emulator()
    harness.configure([RouteSpec("chat")])
    await harness.start()
    config = str(harness.config_path)
    source = harness.root / "waited.jsonl"
    source.write_text(chat_lines(3, "w"))

    code, out, err = await harness.cli(
        "submit", "--wait", "--json", "--config", config, str(source), timeout_s=120
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["finished"], shown["state"], shown["outcome"]) == (True, "done", "succeeded")
    assert (Path(shown["results_dir"]) / "results.jsonl").exists()

    code, out, err = await harness.cli("submit", "--config", config, str(source), "--as", "b.jsonl")
    assert code == 7  # the daemon would reject it as a duplicate: refused before the copy
    assert f"submission {shown['submission_id']}" in err
    assert not (harness.spool("chat").inbox / "b.jsonl").exists()

    # Everything done and delivered: `status` says idle, with the daemon running.
    code, out, err = await harness.cli(
        "status", "--wait", "--timeout", "60", "--json", "--config", config, timeout_s=90
    )
    assert code == 0, err
    status = json.loads(out)
    assert (status["idle"], status["daemon_running"], status["open_submissions"]) == (True, True, 0)
    await harness.stop()
