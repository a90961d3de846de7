"""Shared vs host-local: a file's path means something only on the host that saw it. Intake
recovery and the folder sink act on their own host's submissions only, other sources' sinks
are chosen by origin, and the runtime tags jobs with the deployment's id while its claims are
held by this host's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from batchd.clock import ManualClock
from batchd.config_load import load_settings
from batchd.folder_origin import FolderOrigin
from batchd.models import Submission, SubmissionState
from batchd.providers.base import BatchProvider
from batchd.sinks import SinkRun, Sinks
from batchd.store.base import NewSubmission
from batchd.store.sqlite import SqliteJobStore
from batchd.wiring import build_runtime, host_id
from tests.unit.fakes import FakeProvider
from tests.unit.loops.conftest import World, processing_of, request_lines


def elsewhere(world: World, name: str, host: str = "bdfar") -> NewSubmission:
    """A submission another host claimed from its own drop folder (same route name)."""
    origin = FolderOrigin(
        host=host,
        inbox=str(world.paths.inbox / name),
        processing=str(world.paths.processing / f"1-{name}"),
        dev=1,
        ino=1,
    )
    return NewSubmission(
        route="chat",
        name=name,
        provider="fake",
        endpoint="/v1/chat/completions",
        model="m",
        timeout_hours=24,
        metadata={},
        size_bytes=10,
        origin=origin.to_json(),
    )


async def test_intake_leaves_another_hosts_half_done_claims_alone(world: World) -> None:
    theirs = await world.store.begin_claim(elsewhere(world, "far.jsonl"), now=world.clock.now())
    queued = await world.store.begin_claim(
        replace(elsewhere(world, "q.jsonl"), origin={"source": "amqp", "queue": "in"}),
        now=world.clock.now(),
    )
    mine = await world.accept("near.jsonl", request_lines(2))  # resumes and scans meanwhile
    for _ in range(3):
        await world.intake.run_once()
        world.clock.advance(61)

    for sub in (theirs, queued):
        current = await world.store.get_submission(sub.id)
        assert current is not None and current.state is SubmissionState.CLAIMING  # untouched
    assert mine.state is SubmissionState.ACTIVE
    assert await world.events() == ["submission.accepted"]  # nothing abandoned or rejected


async def test_the_folder_sink_finishes_only_this_hosts_submissions(world: World) -> None:
    sub = await world.accept("a.jsonl", request_lines(2))
    await world.submitter.run_once()
    [job] = await world.jobs(sub.id)
    world.provider.finish(job.provider_job_id or "")
    await world.tracker.run_once()
    origin = FolderOrigin.of(sub)
    assert origin is not None
    moved = replace(sub, origin=replace(origin, host="bdfar").to_json())
    assert world.collector.finisher.sinks.for_submission(moved) is None  # another host's file
    assert world.collector.finisher.sinks.for_submission(sub) is not None

    await world.collector.run_once()
    done = await world.store.get_submission(sub.id)
    assert done is not None and done.state is SubmissionState.DONE
    assert not processing_of(sub).exists()  # handed back in done/a/input.jsonl
    assert (world.paths.done / "a" / "input.jsonl").exists()


class Sink:
    """A sink only told apart from another: these tests choose sinks, never run one."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self, sub: Submission) -> SinkRun:
        raise AssertionError(f"{self.name} was not meant to run")


def sub_from(source: str | None, **origin: object) -> Submission:
    return Submission(
        id="sub_1",
        route="r",
        name="a.jsonl",
        state=SubmissionState.ACTIVE,
        provider="p",
        endpoint="/v1/x",
        model=None,
        timeout_hours=24,
        origin=None if source is None else {"source": source, **origin},
    )


def test_the_sink_is_chosen_by_the_submissions_origin() -> None:
    default, queue = Sink("default"), Sink("queue")
    sinks = Sinks(default)
    sinks.register("amqp", queue, serves=lambda sub: sub.origin is not None and "q" in sub.origin)
    assert sinks.for_submission(sub_from("amqp", q="in")) is queue
    assert sinks.for_submission(sub_from("amqp")) is None  # not servable from here
    assert sinks.for_submission(sub_from(None)) is default  # no origin (e.g. the API)
    assert sinks.for_submission(sub_from("redis")) is default  # a source without a sink


def test_the_host_id_is_kept_in_the_data_folder(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "instance-id").write_text("bdexisting\n")  # an install from before
    assert host_id(tmp_path / "old") == "bdexisting"
    (tmp_path / "new").mkdir()
    made = host_id(tmp_path / "new")
    assert made.startswith("bd") and host_id(tmp_path / "new") == made


def test_the_runtime_tags_with_the_deployment_and_claims_as_the_host(tmp_path: Path) -> None:
    (tmp_path / "batchd.toml").write_text(f"[daemon]\ndata_dir = '{tmp_path / 'data'}'\n")
    settings = load_settings(tmp_path / "batchd.toml", environ={"HOME": str(tmp_path)})
    store = SqliteJobStore(tmp_path / "db.sqlite3")
    providers: dict[str, BatchProvider] = {"emulator": FakeProvider(name="emulator")}
    rt = build_runtime(
        settings, store, providers, instance="bddeploy", host="bdhost", clock=ManualClock()
    )
    assert (rt.submitter._instance_id, rt.submitter._owner) == ("bddeploy", "bdhost")
    assert (rt.tracker._instance_id, rt.tracker._owner) == ("bddeploy", "bdhost")
    assert rt.collector._owner == "bdhost"
    assert rt.claimer._host.id == "bdhost" and rt.claimer._host.deployment == "bddeploy"
