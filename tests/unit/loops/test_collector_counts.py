"""The collector when a job's counters and its result files disagree (issue 13 item 17), with
the fake provider: short files are tried ``verify_attempts`` times, then the requests without
a line are marked missing; files longer than the count are accepted at the first pass."""

from __future__ import annotations

import json
from pathlib import Path

from batchd.models import JobState, Outcome, RequestCounts, ResultState
from tests.unit.loops.conftest import World, request_lines


async def test_files_holding_more_lines_than_counted_are_accepted_at_once(world: World) -> None:
    sub = await world.accept("two.jsonl", request_lines(2))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    counted_one = RequestCounts(total=2, completed=1, succeeded=1, failed=0)
    world.provider.set_state(job.provider_job_id or "", JobState.SUCCEEDED, counts=counted_one)
    await world.tracker.run_once()
    await world.collector.run_once()  # one pass: no retry, downloading again cannot help
    (job,) = await world.jobs(sub.id)
    assert (job.result_state, job.last_error) == (
        ResultState.COLLECTED,
        "unverified: its result files held 2 lines where it counted 1",
    )
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.SUCCEEDED
    summary = json.loads((Path(done.results_dir or "") / "summary.json").read_text())
    assert summary["counts"]["succeeded"] == 2 and summary["counts"]["missing"] == 0


async def test_requests_missing_from_short_files_say_why(world: World) -> None:
    sub = await world.accept("three.jsonl", request_lines(3))
    await world.submitter.run_once()
    (job,) = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "", only=1, shuffle=False)
    whole = RequestCounts(total=3, completed=3, succeeded=3, failed=0)
    world.provider.set_state(job.provider_job_id or "", JobState.SUCCEEDED, counts=whole)
    await world.tracker.run_once()
    for tries in range(1, 4):
        assert await world.store.get_submission(sub.id) is not None
        await world.collector.run_once()
        world.clock.advance(600)
        (job,) = await world.jobs(sub.id)
        settled = job.result_state is ResultState.COLLECTED
        assert settled == (tries == 3)  # verify_attempts, then accepted with the gap marked
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.outcome is Outcome.PARTIAL
    folder = Path(done.results_dir or "")
    records = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    assert [r["status_code"] for r in records] == [200, None, None]
    reason = (
        "the provider returned no result for this request (job succeeded; "
        "its result files held 1 line where it counted 3)"
    )
    assert records[1]["error"] == records[2]["error"] == {"message": reason}
