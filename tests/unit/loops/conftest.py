"""A small world for driving the loops with ``run_once()``: a memory store, a fake provider,
a manual clock, a spool on disk and a work folder."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchd.batchfile import FileLimits
from batchd.claims import Claimer
from batchd.clock import ManualClock
from batchd.collector import Collector, CollectPolicy
from batchd.duplicates import Duplicates
from batchd.folder_origin import FolderOrigin, Host
from batchd.health import ProviderGate
from batchd.intake import Intake
from batchd.models import Job, Submission
from batchd.providers.base import ProviderLimits
from batchd.spool import SpoolPaths
from batchd.store.base import JobStore
from batchd.store.memory import MemoryJobStore
from batchd.submitter import SubmitPolicy, Submitter
from batchd.tracker import Tracker, TrackPolicy
from batchd.workdir import WorkDir
from tests.unit.fakes import FakeProvider


@dataclass(frozen=True)
class Route:
    name: str
    spool: Path
    provider: str = "fake"
    endpoint: str = "/v1/chat/completions"
    model: str | None = "m"
    timeout_hours: int = 24
    metadata: Mapping[str, str] = field(default_factory=lambda: {"team": "ml"})


def request_lines(n: int, prefix: str = "r") -> str:
    return "".join(
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "body": {"messages": [{"role": "user", "content": f"q{i}"}]},
            }
        )
        + "\n"
        for i in range(n)
    )


def processing_of(sub: Submission) -> Path:
    """Where the drop folder claimed ``sub``'s file (its folder origin's ``processing/`` path)."""
    origin = FolderOrigin.of(sub)
    assert origin is not None, f"{sub.id} did not come from a drop folder"
    return Path(origin.processing)


class World:
    def __init__(
        self,
        tmp_path: Path,
        *,
        max_requests: int = 100,
        list_threshold: int = 10,
        store: JobStore | None = None,
    ) -> None:
        self.clock = ManualClock(start=time.time())
        self.store: JobStore = store or MemoryJobStore()
        self.provider = FakeProvider(limits=ProviderLimits(max_requests_per_job=max_requests))
        self.provider.clock = self.clock.now
        self.route = Route("chat", tmp_path / "spool")
        self.paths = SpoolPaths(self.route.spool)
        self.work = WorkDir(tmp_path / "work")
        self.gate = ProviderGate()
        providers = {"fake": self.provider}
        self.claimer = Claimer(
            self.store,
            work=self.work,
            limits=FileLimits(max_file_bytes=10_000_000, max_line_bytes=100_000, max_lines=10_000),
            limits_for=lambda _name: self.provider.limits,
            clock=self.clock,
            host=Host("bdtest", "bdtest"),  # the loops' host, a deployment of its own
        )
        self.intake = Intake(
            self.store,
            self.claimer,
            [self.route],
            clock=self.clock,
            min_age_s=2.0,
            use_inotify=False,
        )
        self.submitter = Submitter(
            self.store,
            providers,
            work=self.work,
            clock=self.clock,
            instance_id="bdtest",
            policy=SubmitPolicy(reconcile_delay_s=5.0),
            gate=self.gate,
        )
        self.tracker = Tracker(
            self.store,
            providers,
            clock=self.clock,
            instance_id="bdtest",
            policy=TrackPolicy(list_threshold=list_threshold, poll_initial_s=5.0),
            gate=self.gate,
        )
        self.collector = Collector(
            self.store,
            providers,
            work=self.work,
            clock=self.clock,
            policy=CollectPolicy(retry_base_s=1.0),
            duplicates=Duplicates(self.store, clock=self.clock, instance_id="bdtest"),
            instance_id="bdtest",
            gate=self.gate,
        )
        self.intake.start()

    def drop(self, name: str, content: str) -> Path:
        staging = self.paths.inbox / f".{name}.part"
        staging.write_text(content)
        target = self.paths.inbox / name
        staging.rename(target)
        return target

    async def accept(self, name: str, content: str) -> Submission:
        """Drop a file and run intake until it is claimed and validated."""
        self.drop(name, content)
        for _ in range(3):
            await self.intake.run_once()
            self.clock.advance(3)
        subs = [s for s in await self.store.list_submissions() if s.name == name]
        assert subs, f"{name} was not claimed"
        return subs[0]

    async def jobs(self, submission_id: str) -> list[Job]:
        return await self.store.jobs_for_submission(submission_id)

    async def events(self) -> list[str]:
        return [e.type for e in await self.store.list_events(limit=10_000)]

    def provider_jobs(self) -> list[Any]:
        return list(self.provider.jobs.values())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)
