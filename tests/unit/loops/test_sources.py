"""The runtime holds a list of sources, the drop folder first; each gets the reloads."""

from __future__ import annotations

from pathlib import Path

from batchd.clock import ManualClock
from batchd.config import Settings
from batchd.config_load import load_settings
from batchd.intake import Intake
from batchd.providers.base import BatchProvider
from batchd.spool import GROUP_READABLE, Modes
from batchd.store.sqlite import SqliteJobStore
from batchd.wiring import apply_settings, build_runtime
from tests.unit.fakes import FakeProvider


class QueueSource:
    """A second source, as a queue consumer would plug in."""

    name = "queue"

    def __init__(self) -> None:
        self.applied: list[tuple[Settings, Modes]] = []

    async def run_once(self) -> int:
        return 0

    async def wait(self) -> None:
        return None

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def apply(self, settings: Settings, modes: Modes) -> None:
        self.applied.append((settings, modes))


def settings_in(tmp_path: Path, *, shared: bool = False) -> Settings:
    text = f"[daemon]\ndata_dir = '{tmp_path / 'data'}'\nshare_with_group = {str(shared).lower()}\n"
    (tmp_path / "batchd.toml").write_text(text)
    return load_settings(tmp_path / "batchd.toml", environ={"HOME": str(tmp_path)})


def test_the_drop_folder_is_the_first_source_and_every_source_gets_reloads(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    store = SqliteJobStore(tmp_path / "db.sqlite3")
    providers: dict[str, BatchProvider] = {"emulator": FakeProvider(name="emulator")}
    rt = build_runtime(settings, store, providers, instance="bdtest", clock=ManualClock())
    assert [type(s) for s in rt.sources] == [Intake]
    queue = QueueSource()
    rt.sources.append(queue)
    assert [loop.name for loop in rt.loops][:2] == ["intake", "queue"]
    reloaded = settings_in(tmp_path, shared=True)
    apply_settings(rt, reloaded, providers)
    assert queue.applied == [(reloaded, GROUP_READABLE)]
    assert rt.sources[0].modes == GROUP_READABLE  # type: ignore[attr-defined]
