"""``ProviderHttp`` against a scripted aiohttp server on loopback: the behaviours the emulator
does not produce (HTML 200, redirects, HTTP-date Retry-After, echoed keys, short bodies)."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from batchd.errors import (
    AuthError,
    NotFound,
    ProviderError,
    ProviderPermanent,
    ProviderTransient,
    RateLimited,
)
from batchd.providers import http as http_module
from batchd.providers.base import ProviderSettings
from batchd.providers.http import ProviderHttp
from batchd.secret import Secret

KEY = "sk-test-0123456789abcdef"


@dataclass
class Script:
    """The scripted server: one handler per behaviour, counting hits."""

    hits: Counter[str] = field(default_factory=Counter)
    fail_first: int = 0  # /flaky and /short fail this many times
    headers: list[dict[str, str]] = field(default_factory=list)

    async def ok(self, request: web.Request) -> web.Response:
        self.hits["ok"] += 1
        self.headers.append(dict(request.headers))
        return web.json_response({"ok": True, "q": request.raw_path.partition("?")[2]})

    async def flaky(self, request: web.Request) -> web.Response:
        self.hits["flaky"] += 1
        if self.hits["flaky"] <= self.fail_first:
            return web.json_response({"message": "busy"}, status=503, headers={"Retry-After": "0"})
        return web.json_response({"ok": True})

    async def html(self, request: web.Request) -> web.Response:
        self.hits["html"] += 1
        return web.Response(text="<html>captive portal</html>", content_type="text/html")

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        self.hits[f"status{code}"] += 1
        body = {"object": "error", "message": f"nope {KEY}", "type": "invalid_request_error"}
        headers = {"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"} if code == 429 else {}
        return web.json_response(body, status=code, headers=headers)

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits["redirect"] += 1
        raise web.HTTPFound("/ok")

    async def slow(self, request: web.Request) -> web.Response:
        self.hits["slow"] += 1
        await asyncio.sleep(1)
        return web.json_response({"ok": True})

    async def gone(self, request: web.Request) -> web.Response:
        self.hits["gone"] += 1
        if self.hits["gone"] == 1:  # the delete happened, then the response was lost
            return web.json_response({"message": "upstream"}, status=502)
        return web.json_response({"message": "No file"}, status=404)

    async def short(self, request: web.Request) -> web.StreamResponse:
        self.hits["short"] += 1
        data = b"0123456789" * 100_000
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = len(data)
        await resp.prepare(request)
        if self.hits["short"] <= self.fail_first:
            await resp.write(data[:1000])
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(data)
        await resp.write_eof()
        return resp


def make_app(script: Script) -> web.Application:
    app = web.Application()
    app.router.add_get("/ok", script.ok)
    app.router.add_post("/ok", script.ok)
    app.router.add_get("/flaky", script.flaky)
    app.router.add_post("/flaky", script.flaky)
    app.router.add_get("/html", script.html)
    app.router.add_get("/status/{code}", script.status)
    app.router.add_delete("/status/{code}", script.status)
    app.router.add_post("/redirect", script.redirect)
    app.router.add_post("/slow", script.slow)
    app.router.add_delete("/gone", script.gone)
    app.router.add_get("/short", script.short)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    runner = web.AppRunner(make_app(script))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def client(base: str, session: aiohttp.ClientSession, **overrides: object) -> ProviderHttp:
    settings = ProviderSettings(
        name="t",
        base_url=base + "/",
        api_key=Secret(KEY),
        requests_per_second=0,
        **overrides,  # type: ignore[arg-type]
    )
    return ProviderHttp(settings, session, sleep=no_sleep)


async def test_sends_key_agent_and_query(server: tuple[str, Script], session) -> None:
    base, script = server
    http = client(base, session)
    data = await http.call_json(
        "get_job", "GET", "/ok", query=[("a", "x:y"), ("s", "1"), ("s", "2")]
    )
    assert data == {"ok": True, "q": "a=x%3Ay&s=1&s=2"}
    sent = script.headers[0]
    assert sent["Authorization"] == f"Bearer {KEY}"
    assert sent["Accept"] == "application/json"
    assert sent["User-Agent"].startswith("batchd/")
    assert http.calls == Counter({"get_job": 1})


async def test_reads_are_retried_until_they_succeed(server: tuple[str, Script], session) -> None:
    base, script = server
    script.fail_first = 3
    http = client(base, session)
    with capture_logs() as logs:
        assert await http.call_json("get_job", "GET", "/flaky") == {"ok": True}
    assert script.hits["flaky"] == 4
    assert http.retries["get_job"] == 3
    retries = [e for e in logs if e["event"] == "provider.retry"]
    assert [(e["attempt"], e["status"]) for e in retries] == [(1, 503), (2, 503), (3, 503)]
    assert all(KEY not in json.dumps(e, default=str) for e in logs)


async def test_reads_give_up_after_the_configured_retries(
    server: tuple[str, Script], session
) -> None:
    base, script = server
    script.fail_first = 100
    http = client(base, session, read_retries=2)
    with pytest.raises(ProviderTransient) as info:
        await http.call_json("list_jobs", "GET", "/flaky")
    assert script.hits["flaky"] == 3
    assert info.value.status == 503
    assert "busy" in info.value.message


async def test_create_is_sent_once_on_5xx(server: tuple[str, Script], session) -> None:
    base, script = server
    script.fail_first = 1
    with pytest.raises(ProviderTransient):
        await client(base, session).call_json("create_job", "POST", "/flaky", body={"a": 1})
    assert script.hits["flaky"] == 1


async def test_create_timeout_is_not_retried(server: tuple[str, Script], session) -> None:
    base, script = server
    http = client(base, session, timeout_s=0.3)
    with pytest.raises(ProviderTransient) as info:
        await http.call_json("create_job", "POST", "/slow", body={})
    assert "timed out" in info.value.message
    assert isinstance(info.value.__cause__, TimeoutError)
    assert script.hits["slow"] == 1


async def test_html_200_is_an_error_not_a_crash(server: tuple[str, Script], session) -> None:
    base, script = server
    with pytest.raises(ProviderTransient) as info:
        await client(base, session, read_retries=1).call_json("get_job", "GET", "/html")
    assert "expected JSON" in info.value.message
    assert script.hits["html"] == 2


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, ProviderPermanent),
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (409, ProviderPermanent),
        (422, ProviderPermanent),
    ],
)
async def test_4xx_is_raised_once_with_the_message_and_without_the_key(
    server: tuple[str, Script], session, code: int, kind: type[ProviderError]
) -> None:
    base, script = server
    with pytest.raises(ProviderError) as info:
        await client(base, session).call_json("get_job", "GET", f"/status/{code}")
    assert type(info.value) is kind
    assert script.hits[f"status{code}"] == 1
    assert "nope ***" in info.value.message
    assert KEY not in info.value.message
    assert KEY not in (info.value.body or "")
    assert base not in info.value.message  # no host in messages


async def test_429_retry_after_date_is_capped_everywhere(
    server: tuple[str, Script], session
) -> None:
    base, script = server
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    settings = ProviderSettings(
        name="t",
        base_url=base,
        api_key=Secret(KEY),
        requests_per_second=0,
        read_retries=1,
        retry_after_max_s=7.0,
    )
    http = ProviderHttp(settings, session, sleep=record)
    with pytest.raises(RateLimited) as info:
        await http.call_json("get_job", "GET", "/status/429")
    assert info.value.retry_after_s == 7.0  # a 2099 date, capped where the error is raised
    assert delays == [7.0]
    assert script.hits["status429"] == 2


async def test_retried_delete_finding_nothing_is_done(server: tuple[str, Script], session) -> None:
    base, script = server
    http = client(base, session)
    assert await http.call_json("delete_file", "DELETE", "/gone") is None
    assert script.hits["gone"] == 2
    with pytest.raises(NotFound):  # a first-attempt 404 is a real "not found"
        await http.call_json("delete_job", "DELETE", "/status/404")
    assert script.hits["status404"] == 1


async def test_redirects_are_not_followed(server: tuple[str, Script], session) -> None:
    base, script = server
    with pytest.raises(ProviderPermanent) as info:
        await client(base, session).call_json("create_job", "POST", "/redirect", body={})
    assert info.value.status == 302
    assert script.hits["ok"] == 0


async def test_connection_refused_is_transient(session) -> None:
    http = client("http://127.0.0.1:9", session, read_retries=1)
    with pytest.raises(ProviderTransient) as info:
        await http.call_json("get_job", "GET", "/ok")
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    assert http.calls["get_job"] == 2


async def test_truncated_download_is_retried_from_scratch(
    server: tuple[str, Script], session, tmp_path: Path
) -> None:
    base, script = server
    script.fail_first = 2
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old content")
    size = await client(base, session).download("download_file", "/short", target)
    assert size == 1_000_000
    assert target.read_bytes() == b"0123456789" * 100_000
    assert script.hits["short"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp left
    assert target.stat().st_mode & 0o777 == 0o600


async def test_a_long_download_is_synced_while_it_streams(
    server: tuple[str, Script], session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fdatasync runs alongside the download (every SYNC_EVERY_BYTES), then one last fsync."""
    base, _ = server
    synced: list[int] = []
    fdatasync = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        fdatasync(fd)

    monkeypatch.setattr(http_module, "SYNC_EVERY_BYTES", 100_000)
    monkeypatch.setattr(http_module, "DOWNLOAD_CHUNK_BYTES", 50_000)
    monkeypatch.setattr(os, "fdatasync", counting)
    target = tmp_path / "out.jsonl"
    assert await client(base, session).download("download_file", "/short", target) == 1_000_000
    assert target.read_bytes() == b"0123456789" * 100_000
    assert synced  # at least one sync ran before the end (the next waits for it to finish)


async def test_download_that_never_completes_leaves_the_old_file(
    server: tuple[str, Script], session, tmp_path: Path
) -> None:
    base, script = server
    script.fail_first = 100
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old content")
    with pytest.raises(ProviderTransient):
        await client(base, session, read_retries=1).download("download_file", "/short", target)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


async def test_download_404_is_not_found(
    server: tuple[str, Script], session, tmp_path: Path
) -> None:
    base, script = server
    with pytest.raises(NotFound):
        await client(base, session).download("download_file", "/status/404", tmp_path / "x")
    assert script.hits["status404"] == 1
    assert list(tmp_path.iterdir()) == []
