"""Who may do what: SO_PEERCRED on the socket (route by spool group, cancel one's own), bearer
tokens over TCP (read / submit / admin), never a token in the logs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from batchd.client import ApiError, Client
from tests.integration.api.conftest import Api, lines, start_api, stop_api
from tests.integration.api.peers import NOBODY, as_user

USERS_GID = 4242  # a group only the test's child process joins


async def test_a_spool_group_member_sees_their_routes_and_cancels_only_their_own(
    tmp_path: Path,
) -> None:
    api = await start_api(tmp_path, speed=1.0)  # slow: the jobs stay open
    try:
        os.chown(api.short / "spool", -1, USERS_GID)  # route chat: the member's; other: not
        async with api.unix() as bd:  # root: everything
            roots = (await bd.submit(lines(2, "r"), name="root.jsonl"))["id"]
            hidden = (await bd.submit(lines(2, "h"), name="hid.jsonl", route="other"))["id"]
        answers = await as_user(
            api.sock,
            NOBODY,
            [USERS_GID],
            [
                ("GET", "/v1/submissions", None),
                ("GET", f"/v1/submissions/{hidden}", None),
                ("POST", f"/v1/submissions/{roots}/cancel", None),
                ("POST", "/v1/submissions?name=mine.jsonl&route=chat", lines(2, "m")),
                ("POST", "/v1/submissions?name=nope.jsonl&route=other", lines(2, "n")),
            ],
        )
        (listed, one_hidden, cancel_root, mine, other_route) = answers
        assert listed[0] == 200 and [s["id"] for s in listed[1]["items"]] == [roots]
        assert one_hidden[0] == 404
        assert cancel_root[0] == 403
        assert mine[0] == 202 and other_route[0] == 404
        mine_id = mine[1]["id"]
        (cancel_mine,) = await as_user(
            api.sock, NOBODY, [USERS_GID], [("POST", f"/v1/submissions/{mine_id}/cancel", None)]
        )
        assert cancel_mine[0] == 202 and cancel_mine[1]["cancel_requested"] is True
        async with api.unix() as bd:
            assert (await bd.get(mine_id))["owner"] == f"uid:{NOBODY}"
        (stranger,) = await as_user(api.sock, NOBODY, [], [("GET", "/v1/submissions", None)])
        assert stranger[0] == 200 and stranger[1]["items"] == []  # in no spool group: nothing
    finally:
        await stop_api(api)


async def test_tcp_needs_a_known_bearer_token_and_answers_problems(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in (
            {},
            {"Authorization": "Bearer bdt_not-a-token"},
            {"Authorization": "Basic x"},
        ):
            async with http.get(api.tcp + "/v1/submissions", headers=headers) as resp:
                assert resp.status == 401
                assert resp.content_type == "application/problem+json"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                problem = await resp.json()
                assert problem["status"] == 401 and problem["title"] == "Unauthorized"
        async with http.get(api.tcp + "/v1/nothing-here") as resp:
            assert resp.status in {401, 404}


async def test_token_roles_read_submit_admin(tmp_path: Path) -> None:
    api = await start_api(tmp_path, speed=1.0)
    try:
        async with (
            api.over_tcp("read") as reader,
            api.over_tcp("submit") as submitter,
            api.over_tcp("admin") as admin,
        ):
            assert (await reader.list())["items"] == []
            with pytest.raises(ApiError) as refused:
                await reader.submit(lines(1, "a"), name="a.jsonl")
            assert refused.value.status == 403
            mine = (await submitter.submit(lines(2, "b"), name="b.jsonl"))["id"]
            theirs = (await admin.submit(lines(2, "c"), name="c.jsonl"))["id"]
            assert (await submitter.get(mine))["owner"] == "token:submiter"
            with pytest.raises(ApiError) as not_owner:
                await submitter.cancel(theirs)
            assert not_owner.value.status == 403
            with pytest.raises(ApiError) as read_only:
                await reader.cancel(mine)
            assert read_only.value.status == 403
            assert (await submitter.cancel(mine))["cancel_requested"] is True
            assert (await admin.cancel(theirs))["cancel_requested"] is True
    finally:
        await stop_api(api)


async def test_no_token_appears_in_logs_or_in_the_tokens_file(api: Api) -> None:
    with capture_logs() as logs:
        async with api.over_tcp("admin") as admin:
            await admin.submit(lines(2, "t"), name="t.jsonl")
            await admin.list()
        async with Client(api.tcp, token=api.tokens["admin"] + "x") as wrong:
            with pytest.raises(ApiError):
                await wrong.list()
    text = repr(logs) + (api.root / "tokens").read_text()
    text += "".join(p.read_text(errors="replace") for p in (api.root / "data").rglob("*.jsonl"))
    for token in api.tokens.values():
        assert token not in text and token.removeprefix("bdt_") not in text


async def test_concurrent_uploads_are_capped(api: Api) -> None:
    release = asyncio.Event()

    async def slow_body(tag: str) -> Any:
        yield lines(1, tag)
        await release.wait()
        yield lines(1, tag + "z")

    async with api.unix() as bd:
        first = asyncio.create_task(bd.submit(slow_body("a"), name="a.jsonl"))
        second = asyncio.create_task(bd.submit(slow_body("b"), name="b.jsonl"))
        await asyncio.sleep(0.5)
        with pytest.raises(ApiError) as third:
            await bd.submit(lines(1, "c"), name="c.jsonl")
        assert third.value.status == 429
        release.set()
        assert {(await first)["name"], (await second)["name"]} == {"a.jsonl", "b.jsonl"}


async def test_a_request_slower_than_the_timeout_is_answered_408(tmp_path: Path) -> None:
    api = await start_api(tmp_path, request_timeout_s=0.5)
    try:
        never = asyncio.Event()

        async def stalled() -> Any:
            yield lines(1, "s")
            await never.wait()
            yield b""

        async with api.unix() as bd:
            with pytest.raises(ApiError) as slow:
                await bd.submit(stalled(), name="slow.jsonl")
            assert slow.value.status == 408
            assert sorted(p.name for p in (api.short / "spool" / "inbox").iterdir()) == []
    finally:
        await stop_api(api)
