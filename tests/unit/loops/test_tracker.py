from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchd.errors import ProviderTransient, RateLimited
from batchd.models import JobState, RequestCounts
from batchd.providers.base import JobSnapshot, TagQuery
from batchd.store.base import EventSpec
from batchd.tracker import CLOCK_SKEW_S, TrackPolicy, next_interval, sweep_interval
from tests.unit.loops.conftest import World, request_lines


async def submitted(world: World, name: str = "one.jsonl", n: int = 3) -> str:
    sub = await world.accept(name, request_lines(n, prefix=name[:2]))
    await world.submitter.run_once()
    return sub.id


def test_backoff_and_sweep_interval_rules() -> None:
    policy = TrackPolicy(poll_initial_s=5, poll_max_s=300, requests_per_second=5)
    assert next_interval(0, False, policy) == 5
    assert next_interval(5, False, policy) == 10
    assert next_interval(160, False, policy) == 300
    assert next_interval(300, True, policy) == 5
    assert sweep_interval(300, policy) == 5  # 3 pages fit in half the budget
    assert sweep_interval(10_000, policy) == 40  # 100 pages at 2.5 requests/s


def test_each_provider_sweeps_at_its_own_rate() -> None:
    policy = TrackPolicy(poll_initial_s=5, rates={"slow": 0.5, "fast": 50.0, "free": 0.0})
    assert sweep_interval(10_000, policy, "slow") == 400  # 100 pages at 0.25 requests/s
    assert sweep_interval(10_000, policy, "fast") == 5  # not slowed by the other account
    assert sweep_interval(10_000, policy, "free") == 5  # no limit configured
    assert sweep_interval(10_000, policy, "other") == 40  # the default 5 requests/s


async def test_state_changes_become_transitions_with_events(world: World) -> None:
    sub_id = await submitted(world)
    (job,) = await world.jobs(sub_id)
    pid = job.provider_job_id or ""
    world.provider.set_state(pid, JobState.RUNNING, counts=RequestCounts(3, 1, 1, 0))
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.RUNNING
    assert job.counts == RequestCounts(3, 1, 1, 0)
    world.provider.finish(pid)
    world.clock.advance(10)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.SUCCEEDED
    assert job.output_file_id is not None
    assert job.result_state.value == "pending"
    events = await world.events()
    assert events[-2:] == ["batch.running", "batch.succeeded"]


async def test_poll_interval_backs_off_and_resets_on_progress(world: World) -> None:
    sub_id = await submitted(world)
    (job,) = await world.jobs(sub_id)
    pid = job.provider_job_id or ""
    intervals = []
    for _ in range(4):
        world.clock.advance(1000)
        await world.tracker.run_once()
        (job,) = await world.jobs(sub_id)
        intervals.append(job.poll_interval_s)
    assert intervals == [5.0, 10.0, 20.0, 40.0]
    world.provider.set_state(pid, JobState.RUNNING, counts=RequestCounts(3, 2, 2, 0))
    world.clock.advance(1000)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.poll_interval_s == 5.0
    assert world.clock.now() + 4 <= job.next_attempt_at <= world.clock.now() + 6


async def test_job_unknown_to_the_provider_is_lost_not_retried(world: World) -> None:
    sub_id = await submitted(world)
    world.provider.jobs.clear()
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.LOST
    assert "batch.lost" in await world.events()
    calls = world.provider.calls["get_job"]
    world.clock.advance(1000)
    await world.tracker.run_once()
    assert world.provider.calls["get_job"] == calls


async def test_unknown_status_keeps_polling(world: World) -> None:
    sub_id = await submitted(world)
    (job,) = await world.jobs(sub_id)
    world.provider.set_state(job.provider_job_id or "", JobState.UNKNOWN)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.UNKNOWN
    assert "batch.unknown_status" in await world.events()
    world.clock.advance(1000)
    world.provider.set_state(job.provider_job_id or "", JobState.RUNNING)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.RUNNING


async def test_three_hundred_open_jobs_cost_a_few_list_calls(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=1)
    sub = await world.accept("many.jsonl", request_lines(300))
    await world.submitter.run_once()
    assert len(world.provider.jobs) == 300
    world.provider.calls.clear()
    await world.tracker.run_once()
    assert world.provider.calls == {"list_jobs": 3}
    # a few jobs finish: only those are fetched one by one
    done = [j.provider_job_id or "" for j in (await world.jobs(sub.id))[:4]]
    for pid in done:
        world.provider.finish(pid)
    world.provider.calls.clear()
    world.clock.advance(6)
    await world.tracker.run_once()
    assert world.provider.calls == {"list_jobs": 3, "get_job": 4}
    states = [j.state for j in await world.jobs(sub.id)]
    assert states.count(JobState.SUCCEEDED) == 4
    # between sweeps nothing is polled
    world.provider.calls.clear()
    world.clock.advance(1)
    await world.tracker.run_once()
    assert sum(world.provider.calls.values()) == 0


async def test_rate_limit_slows_every_poll_of_the_provider(world: World) -> None:
    first = await submitted(world, "aa.jsonl")
    await submitted(world, "bb.jsonl")
    world.provider.fail_before["get_job"].append(RateLimited("429", retry_after_s=60))
    await world.tracker.run_once()
    calls = world.provider.calls["get_job"]
    world.clock.advance(30)
    await world.tracker.run_once()
    assert world.provider.calls["get_job"] == calls  # still slowed down
    world.clock.advance(31)
    await world.tracker.run_once()
    assert world.provider.calls["get_job"] > calls
    assert (await world.jobs(first))[0].state is JobState.PENDING


async def test_cancel_is_retried_until_the_provider_shows_cancelling(world: World) -> None:
    sub_id = await submitted(world)
    await world.store.request_cancel(
        sub_id, now=world.clock.now(), event=EventSpec("submission.cancel_requested", {})
    )
    world.provider.fail_before["cancel_job"].append(ProviderTransient("503"))
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.PENDING and job.cancel_requested
    world.clock.advance(10)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.CANCELLING
    assert world.provider.calls["cancel_job"] == 2
    world.clock.advance(10)
    await world.tracker.run_once()
    assert world.provider.calls["cancel_job"] == 2  # not sent again once cancelling


@pytest.mark.parametrize("seed", [1, 2])
async def test_jitter_keeps_next_poll_within_twenty_percent(world: World, seed: int) -> None:
    world.tracker._rng = random.Random(seed)
    sub_id = await submitted(world)
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    delay = job.next_attempt_at - world.clock.now()
    assert 0.8 * job.poll_interval_s <= delay <= 1.2 * job.poll_interval_s


async def test_a_cancel_recorded_by_another_process_ends_the_wait_at_once(world: World) -> None:
    """``batchd cancel`` only writes the intent to the store: the waiting tracker notices it
    within ``cancel_poll_s`` and sends it, instead of at its next poll (up to 5 s later)."""
    world.tracker.set_policy(TrackPolicy(cancel_poll_s=0.05, poll_initial_s=5.0))
    sub_id = await submitted(world)
    await world.tracker.run_once()  # polled: the next poll is 5 s away
    waiting = asyncio.create_task(world.tracker.wait())
    await asyncio.sleep(0.3)
    assert not waiting.done()  # nothing to do: still waiting for the next poll
    await world.store.request_cancel(
        sub_id, now=world.clock.now(), event=EventSpec("submission.cancel_requested", {})
    )
    await asyncio.wait_for(waiting, timeout=1.0)
    world.provider.fail_before["cancel_job"].append(ProviderTransient("503"))
    await world.tracker.run_once()
    assert world.provider.calls["cancel_job"] == 1

    # Once a pass acted on it, the same intent does not end every wait (no busy loop while
    # the provider refuses): it is retried at the next pass.
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.PENDING and job.cancel_requested
    again = asyncio.create_task(world.tracker.wait())
    await asyncio.sleep(0.3)
    assert not again.done()
    again.cancel()
    await world.tracker.run_once()
    (job,) = await world.jobs(sub_id)
    assert job.state is JobState.CANCELLING


async def test_a_sweep_asks_only_for_jobs_created_since_the_oldest_open_one(
    tmp_path: Path,
) -> None:
    """A provider without status or metadata filters (OpenAI) walks its list newest first:
    the sweep tells it where to stop."""
    world = World(tmp_path, max_requests=1, list_threshold=2)
    sub = await world.accept("many.jsonl", request_lines(5))
    await world.submitter.run_once()
    find_tagged = world.provider.find_tagged
    queries: list[TagQuery] = []

    def recording(query: TagQuery) -> AsyncIterator[JobSnapshot]:
        queries.append(query)
        return find_tagged(query)

    world.provider.find_tagged = recording  # type: ignore[method-assign]
    await world.tracker.run_once()
    oldest = min(j.created_at for j in await world.jobs(sub.id))
    sweeps = [q for q in queries if q.states]
    assert sweeps
    assert {q.created_after for q in sweeps} == {oldest - CLOCK_SKEW_S}
