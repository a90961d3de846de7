"""Page walks stop on total, on an empty page, on a repeated page and at the bound."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from batchd.providers import mistral
from batchd.providers.mistral import walk_pages


@dataclass(frozen=True)
class Item:
    id: str


class Pages:
    """A scripted list endpoint: ``pages[n]`` is what page ``n`` returns."""

    def __init__(self, pages: dict[int, list[str]], total: int | None) -> None:
        self.pages = pages
        self.total = total
        self.asked: list[int] = []

    async def __call__(self, page: int) -> tuple[list[Item], int | None]:
        self.asked.append(page)
        return [Item(i) for i in self.pages.get(page, [])], self.total


async def walk(pages: Pages, *, start: int = 0, size: int = 2) -> list[str]:
    return [i.id async for i in walk_pages(pages, start=start, page_size=size, what="list_jobs")]


async def test_stops_when_total_is_reached() -> None:
    pages = Pages({0: ["a", "b"], 1: ["c", "d"], 2: ["e"], 3: ["never"]}, total=5)
    assert await walk(pages) == ["a", "b", "c", "d", "e"]
    assert pages.asked == [0, 1, 2]


async def test_stops_exactly_at_total_without_asking_an_empty_page() -> None:
    pages = Pages({0: ["a", "b"], 1: ["c", "d"]}, total=4)
    assert await walk(pages) == ["a", "b", "c", "d"]
    assert pages.asked == [0, 1]


async def test_stops_on_an_empty_page_even_if_total_says_more() -> None:
    pages = Pages({0: ["a", "b"]}, total=1000)
    assert await walk(pages) == ["a", "b"]
    assert pages.asked == [0, 1]


async def test_stops_on_a_short_page_without_total() -> None:
    pages = Pages({0: ["a", "b"], 1: ["c"]}, total=None)
    assert await walk(pages) == ["a", "b", "c"]
    assert pages.asked == [0, 1]


async def test_starts_at_the_given_page() -> None:
    pages = Pages({0: ["a", "b"], 1: ["c", "d"], 2: ["e"]}, total=5)
    assert await walk(pages, start=1) == ["c", "d", "e"]


async def test_a_server_ignoring_page_does_not_loop() -> None:
    class Stuck(Pages):
        async def __call__(self, page: int) -> tuple[list[Item], int | None]:
            self.asked.append(page)
            return [Item("a"), Item("b")], 10_000

    pages = Stuck({}, total=10_000)
    with capture_logs() as logs:
        assert await walk(pages) == ["a", "b"]
    assert pages.asked == [0, 1]
    assert [e["event"] for e in logs] == ["provider.page_repeated"]


async def test_a_shifted_list_yields_each_item_once() -> None:
    # a job created during the walk pushes "b" onto page 1 as well (order_by=-created)
    pages = Pages({0: ["a", "b"], 1: ["b", "c"], 2: ["d"]}, total=5)
    assert await walk(pages) == ["a", "b", "c", "d"]


async def test_the_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mistral, "MAX_PAGES", 3)

    class Endless(Pages):
        async def __call__(self, page: int) -> tuple[list[Item], int | None]:
            self.asked.append(page)
            return [Item(f"{page}-a"), Item(f"{page}-b")], None

    pages = Endless({}, total=None)
    with capture_logs() as logs:
        assert len(await walk(pages)) == 6
    assert pages.asked == [0, 1, 2]
    assert [e["event"] for e in logs] == ["provider.page_limit"]
