"""A route fed only by another source (a queue, the API) has no spool: it loads, and what
assumes a drop folder (the folder rules, ``batchd check``, intake) says so or leaves it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchd.batchfile import FileLimits
from batchd.check import check_spool
from batchd.claims import Claimer, spool_paths
from batchd.clock import ManualClock
from batchd.folders import folder_problems
from batchd.intake import Intake
from batchd.providers.base import ProviderLimits
from batchd.store.memory import MemoryJobStore
from batchd.workdir import WorkDir

from .helpers import load

QUEUED = '[[routes]]\nname = "queued"\nprovider = "emulator"\n'
FOLDER = '[[routes]]\nname = "folder"\nspool = "/srv/folder"\nprovider = "emulator"\n'


def test_a_route_without_spool_loads_next_to_folder_routes(tmp_path: Path) -> None:
    settings = load(tmp_path, QUEUED + FOLDER + QUEUED.replace("queued", "other"))
    spools = {r.name: r.spool for r in settings.routes}
    assert spools == {"queued": None, "folder": Path("/srv/folder"), "other": None}


def test_the_folder_rules_and_check_leave_it_out(tmp_path: Path) -> None:
    text = f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n' + QUEUED
    settings = load(tmp_path, text)
    assert folder_problems(settings) == []
    result = check_spool(settings.routes[0], "routes[0].spool")
    assert result.ok and "none" in result.detail


@dataclass(frozen=True)
class Route:
    name: str
    spool: Path | None
    provider: str = "fake"
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    timeout_hours: int = 24
    metadata: dict[str, str] = field(default_factory=dict)


async def test_intake_watches_only_the_routes_with_a_spool(tmp_path: Path) -> None:
    store, clock = MemoryJobStore(), ManualClock()
    claimer = Claimer(
        store,
        work=WorkDir(tmp_path / "work"),
        limits=FileLimits(max_file_bytes=1000, max_line_bytes=1000, max_lines=10),
        limits_for=lambda _name: ProviderLimits(),
        clock=clock,
    )
    routes = [Route("queued", None), Route("folder", tmp_path / "spool")]
    intake = Intake(store, claimer, routes, clock=clock, use_inotify=False)
    intake.start()
    assert await intake.run_once() == 0
    assert (tmp_path / "spool" / "inbox").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool"]  # nothing for "queued"
    with pytest.raises(ValueError, match="route 'queued' has no spool"):
        spool_paths(routes[0])
