"""A submission over the real Unix socket goes the drop folder's way: claimed by intake, run on
the emulator, results streamed back in input order; the events follow it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchd.client import ApiError
from tests.integration.api.conftest import Api, lines


async def test_submit_wait_and_stream_results_over_the_socket(api: Api, tmp_path: Path) -> None:
    source = tmp_path / "five.jsonl"
    source.write_bytes(lines(5))
    async with api.unix() as bd:
        accepted = await bd.submit(source)  # streamed from the file, named after it
        assert accepted["id"] and accepted["route"] == "chat" and accepted["name"] == "five.jsonl"
        done = await bd.wait(accepted["id"], timeout_s=60, poll_s=0.2)
        assert (done["state"], done["outcome"], done["requests"]) == ("done", "succeeded", 5)
        assert done["owner"] == "uid:0"  # who posted it, from the ledger
        results = [line async for line in bd.results(accepted["id"])]
        assert [r["custom_id"] for r in results] == [f"x{i}" for i in range(5)]
        assert [e async for e in bd.errors(accepted["id"])] == []
        page = await bd.list(states=["done"])
        assert [s["id"] for s in page["items"]] == [accepted["id"]]
        async with bd.session.get("http://batchd/v1/events", params={"limit": "1000"}) as resp:
            events = (await resp.json())["items"]
        mine = [e["type"] for e in events if e["submission_id"] == accepted["id"]]
        assert "submission.accepted" in mine and "results.ready" in mine


async def test_the_options_reach_the_submission_and_a_bad_option_is_named(api: Api) -> None:
    async with api.unix() as bd:
        accepted = await bd.submit(
            lines(2), name="opts.jsonl", route="other", options={"metadata": {"team": "a"}}
        )
        found = await bd.get(accepted["id"])
        assert (found["route"], found["metadata"]["team"]) == ("other", "a")
        with pytest.raises(ApiError) as bad:
            await bd.submit(lines(2, "y"), name="bad.jsonl", options={"timeout_hours": 0})
        assert bad.value.status == 422 and "timeout_hours" in bad.value.problem["detail"]


async def test_bad_files_duplicates_and_sizes_are_refused_with_problems(api: Api) -> None:
    async with api.unix() as bd:
        first = await bd.submit(lines(2, "d"), name="d.jsonl")
        await bd.wait(first["id"], timeout_s=60, poll_s=0.2)
        refusals: dict[str, Any] = {}
        for label, body, name in [
            ("invalid", b'{"custom_id": "a", "body": {}}\nnot json\n', "bad.jsonl"),
            ("duplicate", lines(2, "d"), "again.jsonl"),
            ("too large", b"x" * (2 << 20), "big.jsonl"),
            ("empty", b"", "empty.jsonl"),
            ("bad name", lines(1), "../evil"),
        ]:
            try:
                await bd.submit(body, name=name)
            except ApiError as exc:
                refusals[label] = (exc.status, exc.problem)
        assert {k: v[0] for k, v in refusals.items()} == {
            "invalid": 422,
            "duplicate": 409,
            "too large": 413,
            "empty": 422,
            "bad name": 400,
        }
        assert any(e["line"] == 2 for e in refusals["invalid"][1]["errors"])
        assert refusals["duplicate"][1]["earlier_id"] == first["id"]
        allowed = await bd.submit(
            lines(2, "d"), name="again.jsonl", options={"allow_duplicate": True}
        )
        assert allowed["id"] != first["id"]
        inbox = api.short / "spool" / "inbox"
        assert sorted(p.name for p in inbox.iterdir()) == []  # no .part left behind


async def test_an_idempotency_key_answers_a_retry_with_the_same_submission(api: Api) -> None:
    async with api.unix() as bd:
        one = await bd.submit(lines(3, "k"), name="k.jsonl", idempotency_key="key-1")
        again = await bd.submit(lines(3, "k"), name="k.jsonl", idempotency_key="key-1")
        assert again["id"] == one["id"]
        with pytest.raises(ApiError) as reused:
            await bd.submit(lines(4, "k"), name="k2.jsonl", idempotency_key="key-1")
        assert reused.value.status == 422
        page = await bd.list()
        assert [s["id"] for s in page["items"]] == [one["id"]]


async def test_events_stream_live_over_sse(api: Api) -> None:
    async with api.unix() as bd:
        seen: list[dict[str, Any]] = []

        async def listen() -> None:
            async for event in bd.events():
                seen.append(event)
                if event["type"] == "results.ready":
                    return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.3)
        accepted = await bd.submit(lines(2, "s"), name="s.jsonl")
        await asyncio.wait_for(listener, timeout=60)
        assert {e["submission_id"] for e in seen} == {accepted["id"]}
        assert seen[0]["type"] == "submission.accepted"


async def test_cancel_over_the_socket_and_pages_by_cursor(tmp_path: Any) -> None:
    from tests.integration.api.conftest import start_api, stop_api

    api = await start_api(tmp_path, speed=1.0)  # slow: the jobs are still running
    try:
        async with api.unix() as bd:
            ids = [(await bd.submit(lines(2, f"p{i}"), name=f"p{i}.jsonl"))["id"] for i in range(3)]
            first = await bd.list(limit=2)
            second = await bd.list(limit=2, cursor=first["next_cursor"])
            listed = [s["id"] for s in first["items"] + second["items"]]
            assert listed == list(reversed(ids)) and second["next_cursor"] is None
            cancelled = await bd.cancel(ids[0])
            assert cancelled["cancel_requested"] is True
            done = await bd.wait(ids[0], timeout_s=60, poll_s=0.2)
            assert done["outcome"] == "cancelled"
    finally:
        await stop_api(api)


async def test_health_readiness_and_the_description_need_no_credentials(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        for path, status in [("/healthz", 200), ("/readyz", 200), ("/openapi.json", 200)]:
            async with http.get(api.tcp + path) as resp:
                assert resp.status == status, path
        async with http.get(api.tcp + "/openapi.json") as resp:
            spec = await resp.json()
        assert "/v1/submissions/{id}/cancel" in spec["paths"]
