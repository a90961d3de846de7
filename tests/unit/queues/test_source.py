"""The queue source driven by ``run_once()``: batching, dead letters, batch messages, and
recognising what a crash or a lost connection brings back (never submitted twice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchd.models import SubmissionState
from batchd.queues.broker import REASON_HEADER
from batchd.queues.commit import Committer
from batchd.queues.config import SourceConfig
from batchd.queues.inflight import ACK_GRACE_S
from batchd.queues.publish import MISSING_HEADER, ResultPublisher
from batchd.queues.source import QueueSource
from tests.unit.loops.conftest import World, processing_of, request_lines

from .fakes import FakeBroker


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def make_source(world: World, broker: FakeBroker, tmp_path: Path, **cfg: object) -> QueueSource:
    fields: dict[str, object] = {
        "name": "orders",
        "kind": "amqp",
        "url": "amqp://127.0.0.1/",
        "queue": "requests",
        "route": "chat",
        "max_requests": 3,
        "max_wait_s": 60,
        "prefetch": 10,
    }
    config = SourceConfig.model_validate(fields | cfg)
    committer = Committer(
        world.store,
        world.claimer,
        source="orders",
        records=tmp_path / "data" / "queues" / "orders",
        routes=[world.route],
        clock=world.clock,
    )
    publisher = ResultPublisher(
        world.store,
        tmp_path / "data" / "queues" / "orders" / "publish",
        results_to=config.results_to,
        source="orders",
        clock=world.clock,
    )
    return QueueSource(
        config,
        broker,
        committer,
        publisher,
        [world.route],
        clock=world.clock,
        max_file_bytes=10_000_000,
        max_lines=10_000,
    )


def problem_of(source: QueueSource) -> str | None:
    return source.problem


async def subs(world: World) -> list:  # type: ignore[type-arg]
    return await world.store.list_submissions()


async def test_requests_become_one_submission_at_max_requests_acked_after_commit(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    for cid in ("a", "b"):
        broker.request(cid)
    await source.run_once()
    assert await subs(world) == [] and broker.acked == []  # 2 < max_requests: waiting
    broker.request("c")
    broker.request("d")
    await source.run_once()
    (sub,) = await subs(world)
    assert sub.state is SubmissionState.ACTIVE
    assert (sub.route, sub.line_count, sub.name.startswith("orders-")) == ("chat", 3, True)
    assert [m.key for m in broker.acked] == ["m-a", "m-b", "m-c"]
    assert len(await world.jobs(sub.id)) == 1
    assert len(broker.unacked) == 1  # "d" waits for the next batch
    assert source.held() == 1


async def test_a_batch_is_flushed_after_max_wait_s(world: World, tmp_path: Path) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.request("a")
    await source.run_once()
    world.clock.advance(59)
    await source.run_once()
    assert await subs(world) == []
    world.clock.advance(2)
    await source.run_once()
    (sub,) = await subs(world)
    assert sub.line_count == 1 and [m.key for m in broker.acked] == ["m-a"]
    lines = processing_of(sub).read_text().splitlines()
    assert [json.loads(x)["custom_id"] for x in lines] == ["a"]


async def test_bad_messages_go_to_the_dead_letter_queue_with_their_reason(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.put(b"{nope", key="m-1")
    broker.put({"body": {}}, key="m-2")
    broker.put({"custom_id": "x", "body": {}, "route": "other"}, key="m-3")
    broker.put({"custom_id": "y", "body": {"p": "z" * 2000}}, key="m-4")
    source._limits = source._limits.__class__(1000, 10_000_000, 10_000)
    await source.run_once()
    dead = broker.dead()
    assert [d.message_id for d in dead] == ["m-1", "m-2", "m-3", "m-4"]
    reasons = [d.headers[REASON_HEADER] for d in dead]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("missing custom_id")
    assert reasons[2].startswith("unknown route 'other'")
    assert "over max_request_bytes" in reasons[3]
    assert all(d.to == "requests.dead" for d in dead)
    assert len(broker.acked) == 4 and source.counts["dead_lettered"] == 4
    assert await subs(world) == []


async def test_the_same_custom_id_twice_in_one_batch_is_a_dead_letter(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.request("a")
    broker.put({"custom_id": "a", "body": {"messages": []}}, key="m-a2")
    await source.run_once()
    (dead,) = broker.dead()
    assert dead.message_id == "m-a2"
    assert "already waiting" in dead.headers[REASON_HEADER]


async def test_a_batch_message_is_a_submission_of_its_own_like_a_dropped_file(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    lines = [json.loads(x) for x in request_lines(5).splitlines()]
    broker.put({"name": "nightly.jsonl", "lines": lines}, key="b-1")
    await source.run_once()
    (sub,) = await subs(world)
    assert (sub.name, sub.line_count, sub.state) == ("nightly.jsonl", 5, SubmissionState.ACTIVE)
    assert [m.key for m in broker.acked] == ["b-1"]
    assert sub.results_dir == str(world.paths.done / "nightly")


async def test_an_invalid_batch_is_rejected_like_a_file_and_dead_lettered(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    data = request_lines(2) + '{"custom_id": "r0", "body": {}}\n'  # r0 twice
    broker.put(data.encode(), key="b-1", **{"batchd-name": "bad.jsonl"})
    await source.run_once()
    (sub,) = await subs(world)
    assert sub.state is SubmissionState.REJECTED
    (dead,) = broker.dead()
    assert "line 3" in dead.headers[REASON_HEADER]
    assert (world.paths.rejected / "bad.jsonl").exists()
    assert [m.key for m in broker.acked] == ["b-1"]


async def test_a_duplicate_batch_is_refused_but_auto_batches_may_repeat(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path, max_requests=1)
    lines = [json.loads(x) for x in request_lines(2).splitlines()]
    broker.put({"name": "n.jsonl", "lines": lines}, key="b-1")
    broker.put({"name": "n2.jsonl", "lines": lines}, key="b-2")
    broker.request("same")
    await source.run_once()
    broker.put(
        {"custom_id": "same", "body": {"messages": [{"role": "user", "content": "q-same"}]}},
        key="m-same-again",
    )
    world.clock.advance(ACK_GRACE_S + 1)  # the first one's record has expired
    await source.run_once()
    states = sorted((s.name.split("-")[0], s.state.value) for s in await subs(world))
    assert states == [
        ("n.jsonl", "active"),
        ("n2.jsonl", "rejected"),
        ("orders", "active"),
        ("orders", "active"),
    ]
    (dead,) = broker.dead()
    assert dead.message_id == "b-2" and "duplicate" in dead.headers[REASON_HEADER]


async def test_a_connection_lost_between_commit_and_ack_never_submits_twice(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    for cid in "abc":
        broker.request(cid)
    broker.fail_next_ack = True
    await source.run_once()  # committed, then the ack fails: the connection is lost
    assert len(await subs(world)) == 1 and broker.acked == []
    assert source.problem is not None and "ack failed" in source.problem
    world.clock.advance(120)
    await source.run_once()  # reconnects; the three come back, recognised, acknowledged
    assert broker.connects == 2
    assert sorted(str(m.key) for m in broker.acked) == ["m-a", "m-b", "m-c"]
    assert all(m.redelivered for m in broker.acked)
    assert len(await subs(world)) == 1 and source.counts["recognised"] == 3
    assert source.problem is None


async def test_a_restart_between_commit_and_ack_recognises_the_redelivery(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    for cid in "abc":
        broker.request(cid)
    broker.fail_next_ack = True
    await source.run_once()
    (sub,) = await subs(world)
    # A new process: a new source on the same store and data folder; the broker redelivers.
    again = make_source(world, broker, tmp_path)
    await again.run_once()
    assert [s.id for s in await subs(world)] == [sub.id]
    assert sorted(str(m.key) for m in broker.acked) == ["m-a", "m-b", "m-c"]
    records = tmp_path / "data" / "queues" / "orders"
    assert len(list(records.glob("*.json"))) == 1  # kept a while (an AMQP ack is unconfirmed)
    world.clock.advance(ACK_GRACE_S + 1)
    await again.run_once()
    assert list(records.glob("*.json")) == []


async def test_a_restart_before_the_commit_commits_the_written_flush_once(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    for cid in "abc":
        broker.request(cid)
    await source._connect()
    taken = await broker.receive(10, 0)
    lines = b"".join(
        json.dumps({"custom_id": json.loads(m.body)["custom_id"], "body": {}}).encode() + b"\n"
        for m in taken
    )
    keys = [f"id:{m.key}" for m in taken]
    source._committer.write(world.route, "orders-crashed.jsonl", lines, keys)  # then: SIGKILL
    broker.lose()
    again = make_source(world, broker, tmp_path)
    await again.run_once()
    (sub,) = await subs(world)
    assert (sub.name, sub.state, sub.line_count) == (
        "orders-crashed.jsonl",
        SubmissionState.ACTIVE,
        3,
    )
    assert sorted(str(m.key) for m in broker.acked) == ["m-a", "m-b", "m-c"]


async def test_a_claim_left_half_done_is_finished_by_the_source_not_by_intake(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    flush = source._committer.write(world.route, "orders-x.jsonl", request_lines(2).encode(), [])
    sub = await source._committer._claim(flush, world.route)  # then: SIGKILL
    await world.intake.run_once()
    assert (await world.store.get_submission(sub.id)).state is SubmissionState.CLAIMING  # type: ignore[union-attr]
    again = make_source(world, broker, tmp_path)
    await again.run_once()
    assert (await world.store.get_submission(sub.id)).state is SubmissionState.ACTIVE  # type: ignore[union-attr]


async def test_a_broker_down_at_start_is_retried_with_backoff_and_shown(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    broker.down = True
    source = make_source(world, broker, tmp_path)
    assert await source.run_once() == 0
    assert source.problem is not None and "Connect call failed" in source.problem
    assert "amqp amqp://127.0.0.1/ requests" in source.problem
    await source.run_once()  # too early: not tried again
    assert broker.connects == 0 and source._backoff.failures == 1
    broker.down = False
    broker.request("a")
    world.clock.advance(5)
    await source.run_once()
    assert (broker.connects, problem_of(source), source.held()) == (1, None, 1)


async def test_a_store_that_fails_holds_the_messages_and_stops_taking_more(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path, prefetch=4)
    failing = True

    async def begin_claim(*args: Any, **kw: Any) -> Any:
        if failing:
            raise OSError("disk full")
        return await original(*args, **kw)

    original = world.store.begin_claim
    monkeypatch.setattr(world.store, "begin_claim", begin_claim)
    for cid in "abcdefg":
        broker.request(cid)
    await source.run_once()
    await source.run_once()
    assert broker.acked == [] and len(broker.unacked) == 4  # the prefetch, no more
    assert len(broker.ready) == 3
    failing = False
    await source.run_once()  # abc (max_requests), d (alone: the prefetch was full), efg
    assert len(broker.acked) == 7
    assert sorted(s.line_count for s in await subs(world)) == [1, 3, 3]


async def finish_all(world: World, failing: set[str] | None = None) -> None:
    """Submit every job, let the provider finish them, track and collect."""
    await world.submitter.run_once()
    for job in await world.store.list_jobs():
        world.provider.finish(job.provider_job_id or "", failing=failing or set())
    for _ in range(3):
        await world.tracker.run_once()
        await world.collector.run_once()
        world.clock.advance(30)


async def test_each_result_goes_to_its_reply_to_or_the_results_queue_once_done(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.request("a", reply_to="app.a")
    broker.request("b")
    broker.request("c", reply_to="gone")
    broker.missing.add("gone")
    await source.run_once()
    (sub,) = await subs(world)
    await source.run_once()
    assert [m for m in broker.published if not m.to.endswith(".dead")] == []  # not done yet
    await finish_all(world, failing={"b"})
    assert (await world.store.get_submission(sub.id)).state is SubmissionState.DONE  # type: ignore[union-attr]
    await source.run_once()
    got = {m.correlation_id: m for m in broker.published}
    assert {k: m.to for k, m in got.items()} == {
        "a": "app.a",
        "b": "requests.results",
        "c": "requests.results",
    }
    assert got["c"].headers[MISSING_HEADER] == "gone"
    assert got["a"].message_id == f"{sub.id}/a"
    a, b = json.loads(got["a"].body), json.loads(got["b"].body)
    assert (a["custom_id"], a["status_code"], a["submission_id"]) == ("a", 200, sub.id)
    assert a["response"] is not None and b["error"] is not None
    await source.run_once()
    assert len(broker.published) == 3  # once


async def test_a_batch_message_completion_is_published_once_like_results_ready(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    lines = [json.loads(x) for x in request_lines(3).splitlines()]
    broker.put({"name": "nightly.jsonl", "lines": lines}, key="b-1")
    await source.run_once()
    await finish_all(world)
    await source.run_once()
    await source.run_once()
    (done,) = broker.published
    event = json.loads(done.body)
    (ready,) = [e for e in await world.store.list_events(limit=1000) if e.type == "results.ready"]
    assert (done.to, done.message_id) == ("requests.results", ready.id)
    assert event == {"id": ready.id, "type": "results.ready", "data": ready.data}


async def test_results_are_published_again_after_a_broker_outage_with_the_same_ids(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path, max_requests=2)
    broker.request("a")
    broker.request("b")
    await source.run_once()
    await finish_all(world)
    real = broker.publish
    calls = 0

    async def flaky(messages):
        nonlocal calls
        calls += 1
        if calls == 1:
            broker.lose()
            from batchd.queues.broker import BrokerDown

            raise BrokerDown("publish failed: connection reset")
        return await real(messages)

    broker.publish = flaky  # type: ignore[method-assign]
    await source.run_once()
    assert broker.published == [] and source.problem is not None
    world.clock.advance(120)
    await source.run_once()
    assert sorted(str(m.message_id).split("/")[1] for m in broker.published) == ["a", "b"]


async def test_at_shutdown_what_waits_is_flushed_and_acknowledged(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.request("a")
    broker.request("b")
    await source.run_once()
    assert await subs(world) == []
    assert await source.drain() == 2
    (sub,) = await subs(world)
    assert sub.line_count == 2 and len(broker.acked) == 2


async def test_at_shutdown_with_the_broker_down_nothing_is_flushed(
    world: World, tmp_path: Path
) -> None:
    broker = FakeBroker()
    source = make_source(world, broker, tmp_path)
    broker.request("a")
    await source.run_once()
    broker.lose()
    source._connected = False
    assert await source.drain() == 0
    assert await subs(world) == []
