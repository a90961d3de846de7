"""``walk_cursor``: the bounded walk over OpenAI's cursor lists (no page numbers, no total)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from batchd.providers import openai as openai_provider
from batchd.providers.openai import walk_cursor
from batchd.providers.openai_wire import CursorPage


@dataclass(frozen=True)
class Item:
    id: str


async def _walk(pages: dict[str | None, CursorPage]) -> tuple[list[str], list[str | None]]:
    asked: list[str | None] = []

    async def fetch(after: str | None) -> CursorPage:
        asked.append(after)
        return pages[after]

    return [item.id async for item in walk_cursor(fetch, "list_jobs")], asked


def page(*ids: str, more: bool) -> CursorPage:
    return CursorPage(tuple(Item(i) for i in ids), more)


async def test_follows_the_last_id_until_has_more_is_false() -> None:
    pages = {None: page("c", "b", more=True), "b": page("a", more=False)}
    assert await _walk(pages) == (["c", "b", "a"], [None, "b"])


async def test_an_empty_page_ends_the_walk() -> None:
    pages = {None: page("b", more=True), "b": page(more=True)}
    assert await _walk(pages) == (["b"], [None, "b"])


async def test_a_cursor_handed_back_again_stops_the_walk() -> None:
    pages = {None: page("c", "b", more=True), "b": page("b", more=True)}
    with capture_logs() as logs:
        ids, asked = await _walk(pages)
    assert (ids, asked) == (["c", "b"], [None, "b"])
    assert [e["event"] for e in logs] == ["provider.cursor_repeated"]


async def test_the_page_cap_bounds_a_walk_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_provider, "MAX_PAGES", 3)
    pages: dict[str | None, CursorPage] = {f"p{i}": page(f"p{i + 1}", more=True) for i in range(5)}
    pages[None] = page("p0", more=True)
    with capture_logs() as logs:
        ids, asked = await _walk(pages)
    assert (ids, len(asked)) == (["p0", "p1", "p2"], 3)
    assert [e["event"] for e in logs] == ["provider.page_limit"]
