"""``batchd jobs watch``: one frame drawn from the store (what ``--once`` prints)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from batchd.cli._watch import frame
from tests.unit.loops.conftest import World, request_lines


def render(renderable: object) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_a_frame_shows_each_open_submission_with_its_progress(tmp_path: Path) -> None:
    world = World(tmp_path, max_requests=4)
    assert await frame(world.store) == "no open submissions"
    sub = await world.accept("ten.jsonl", request_lines(10))
    await world.submitter.run_once()
    first, *_ = await world.jobs(sub.id)
    world.provider.finish(first.provider_job_id or "")
    await world.tracker.run_once()

    text = render(await frame(world.store))
    assert "ten.jsonl (chat)" in text
    assert "4/10" in text  # the finished chunk's 4 requests of 10
    assert "pending" in text and "succeeded" in text
