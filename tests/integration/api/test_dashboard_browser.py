"""The dashboard in headless Chromium (Playwright, Debian's chromium): a dropped file's progress
moves live and its outcome shows; cancel works from a submission's page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.api.conftest import Api, lines, start_api, stop_api
from tests.services import chromium_path

playwright_api = pytest.importorskip("playwright.async_api")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser_page(tmp_path: Path) -> AsyncIterator[tuple[Api, object]]:
    executable = chromium_path()
    api = await start_api(tmp_path, speed=4.0)
    try:
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, args=ARGS)
            context = await browser.new_context(
                extra_http_headers={"Authorization": f"Bearer {api.tokens['admin']}"}
            )
            page = await context.new_page()
            try:
                yield api, page
            finally:
                await browser.close()
    finally:
        await stop_api(api)


async def test_a_dropped_files_progress_moves_and_its_outcome_shows(browser_page) -> None:
    api, page = browser_page
    await page.goto(api.tcp + "/")
    assert await page.locator("#open").count() == 0  # nothing open yet
    inbox = api.short / "spool" / "inbox"
    (api.root / "drop.part").write_bytes(lines(60, "b"))
    (api.root / "drop.part").rename(inbox / "dropped.jsonl")  # a drop, not the API
    row = page.locator("#open tr[data-open]")
    await row.first.wait_for(timeout=30_000)  # appeared without a reload
    seen: set[str] = set()
    for _ in range(300):
        if await page.locator("#finished tr", has_text="dropped.jsonl").count():
            break
        if await row.count():
            seen.add(await row.first.locator(".progress").inner_text())
        await asyncio.sleep(0.1)
    finished = page.locator("#finished tr", has_text="dropped.jsonl")
    await finished.wait_for(timeout=30_000)
    assert "succeeded" in await finished.inner_text()
    progressed = {int(re.match(r"(\d+)/60", s).group(1)) for s in seen}  # type: ignore[union-attr]
    assert len(progressed) >= 2, seen  # the page showed the count moving, live
    assert await finished.locator("a", has_text="results").count() == 1


async def test_cancel_from_the_submissions_page(browser_page) -> None:
    api, page = browser_page
    async with api.unix() as bd:
        accepted = await bd.submit(lines(400, "c"), name="slow.jsonl")
    await page.goto(f"{api.tcp}/submissions/{accepted['id']}")
    await page.locator(f"[data-cancel='{accepted['id']}']").click()
    await page.wait_for_url(f"**/submissions/{accepted['id']}")
    await page.get_by_text("Cancel requested.").wait_for(timeout=10_000)
    facts = page.locator("#facts")
    await facts.get_by_text("cancelled").wait_for(timeout=60_000)  # live, no reload
    async with api.unix() as bd:
        assert (await bd.get(accepted["id"]))["outcome"] == "cancelled"
