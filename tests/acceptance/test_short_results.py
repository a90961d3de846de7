"""Issue 13 item 17 with the real processes: the provider's result file holds fewer lines than
its job counted (``batchd emulator --fault short_results``, as mistralai/client-python#159
reports of the real API). The requests left out are marked in results.jsonl with why, the run
ends partial, ``results.ready`` says so, and the file is downloaded three times, not forever."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from batchd.models import Outcome, ResultState
from tests.acceptance.harness import Harness, RouteSpec, chat_lines, read_jsonl

CONTENT_ROUTE = "GET /v1/files/{file_id}/content"


async def test_a_short_result_file_ends_partial_with_the_missing_requests_marked(
    harness: Harness,
) -> None:
    emulator = harness.start_emulator(faults=["short_results:1,fraction=0.5"])
    harness.configure([RouteSpec("chat")])
    await harness.start()
    harness.drop("chat", "short.jsonl", chat_lines(4, "s"))
    done = await harness.wait_done("short.jsonl")

    folder = Path(done.results_dir or "")
    records = read_jsonl(folder / "results.jsonl")
    assert done.outcome is Outcome.PARTIAL
    assert [(r["custom_id"], r["status_code"]) for r in records] == [
        ("s0", 200),
        ("s1", 200),
        ("s2", None),
        ("s3", None),
    ]
    reason = (
        "the provider returned no result for this request (job succeeded; "
        "its result files held 2 lines where it counted 4)"
    )
    assert [r["error"]["message"] for r in records[2:]] == [reason, reason]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["outcome"] == "partial" and summary["counts"]["missing"] == 2
    (job,) = await harness.jobs(done.id)
    assert job.result_state is ResultState.COLLECTED
    assert job.last_error == "unverified: its result files held 2 lines where it counted 4"
    (ready,) = [e for e in await harness.events(done.id) if e.type == "results.ready"]
    assert ready.data["outcome"] == "partial" and ready.data["counts"]["missing"] == 2
    assert {"message": reason, "count": 2} in ready.data["top_errors"]

    assert emulator.stats()[CONTENT_ROUTE] == 3  # the tries, then accepted as it is
    await asyncio.sleep(2)  # several collector passes at the test's 0.2 s retry base
    assert emulator.stats()[CONTENT_ROUTE] == 3
    await harness.stop()
