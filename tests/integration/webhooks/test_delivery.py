"""``deliver()`` against real receivers on 127.0.0.1: signatures, redirects, the size cap."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from batchd.secret import Secret
from batchd.webhooks.delivery import deliver, make_session, send_test
from batchd.webhooks.schedule import AttemptOutcome
from batchd.webhooks.signing import new_secret
from tests.integration.webhooks.conftest import ReceiverFactory, endpoint

BODY = b'{"data":{"job_id":"job_1"},"timestamp":"2026-01-01T00:00:00Z","type":"batch.created"}'


async def test_a_delivered_request_verifies_and_carries_the_exact_bytes(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    old, new = new_secret(), new_secret()
    target = replace(endpoint("a", receiver.url), secrets=(Secret(new), Secret(old)))
    async with make_session(allow_private=True) as session:
        result = await deliver(session, target, event_id="evt_1", payload=BODY, now=time.time())
    assert result.outcome is AttemptOutcome.DELIVERED
    assert result.status == 204
    [seen] = receiver.seen
    assert seen.body == BODY
    assert seen.headers["webhook-id"] == "evt_1"
    assert seen.headers["Content-Type"] == "application/json"
    for secret in (old, new):
        assert Webhook(secret).verify(seen.body, seen.headers)["type"] == "batch.created"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failure_and_is_never_followed(
    make_receiver: ReceiverFactory, status: int
):
    internal = await make_receiver()

    async def redirect(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": internal.url + "/admin"})

    outer = await make_receiver(redirect)
    async with make_session(allow_private=True) as session:
        result = await deliver(
            session, endpoint("a", outer.url), event_id="evt_r", payload=BODY, now=time.time()
        )
    assert result.outcome is AttemptOutcome.RETRY
    assert result.status == status
    assert len(outer.seen) == 1
    assert internal.seen == []


async def test_retry_after_is_read_from_the_response(make_receiver: ReceiverFactory):
    async def throttled(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "120"})

    receiver = await make_receiver(throttled)
    async with make_session(allow_private=True) as session:
        result = await deliver(
            session, endpoint("a", receiver.url), event_id="evt_t", payload=BODY, now=time.time()
        )
    assert (result.outcome, result.status, result.retry_after_s) == (
        AttemptOutcome.RETRY,
        429,
        120.0,
    )


async def test_an_endless_response_is_cut_at_the_cap(make_receiver: ReceiverFactory):
    async def endless(request: web.Request, _index: int) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what the cap should make it do
        return response

    receiver = await make_receiver(endless)
    target = endpoint("a", receiver.url, max_response_bytes=1000, timeout_s=60)
    async with make_session(allow_private=True) as session:
        result = await deliver(session, target, event_id="evt_b", payload=BODY, now=time.time())
    # Without the cap the read would run into the 60 s timeout and count as a failure.
    assert result.outcome is AttemptOutcome.DELIVERED
    assert 0 < result.response_bytes <= 1000
    await receiver.wait_until(lambda r: r.finished == 1)  # the server saw the hang-up


async def test_a_large_error_body_is_not_read_past_the_cap(make_receiver: ReceiverFactory):
    async def big(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=500, body=b"e" * 2_000_000)

    receiver = await make_receiver(big)
    target = endpoint("a", receiver.url, max_response_bytes=4096)
    async with make_session(allow_private=True) as session:
        result = await deliver(session, target, event_id="evt_e", payload=BODY, now=time.time())
    assert (result.outcome, result.status) == (AttemptOutcome.RETRY, 500)
    assert result.response_bytes <= 4096


async def test_a_timeout_is_a_retry(make_receiver: ReceiverFactory):
    import asyncio

    release = asyncio.Event()

    async def hang(_request: web.Request, _index: int) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=200)

    receiver = await make_receiver(hang)
    target = endpoint("a", receiver.url, timeout_s=0.2)
    async with make_session(allow_private=True) as session:
        result = await deliver(session, target, event_id="evt_h", payload=BODY, now=time.time())
    release.set()
    assert (result.outcome, result.status, result.error) == (AttemptOutcome.RETRY, None, "timeout")


async def test_a_refused_connection_is_a_retry(make_receiver: ReceiverFactory):
    receiver = await make_receiver()
    url = receiver.url
    async with make_session(allow_private=True) as session:
        # A port nobody listens on: bind one, then close it.
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        target = endpoint("a", f"http://127.0.0.1:{port}/hook")
        result = await deliver(session, target, event_id="evt_c", payload=BODY, now=time.time())
    assert (result.outcome, result.status) == (AttemptOutcome.RETRY, None)
    assert result.error
    assert url  # the live receiver was never involved
    assert receiver.seen == []


async def test_send_test_delivers_a_signed_webhook_test_event(make_receiver: ReceiverFactory):
    receiver = await make_receiver()
    secret = new_secret()
    async with make_session(allow_private=True) as session:
        event_id, result = await send_test(
            session, endpoint("a", receiver.url, secret), now=time.time()
        )
    assert result.outcome is AttemptOutcome.DELIVERED
    [seen] = receiver.seen
    assert seen.id == event_id
    payload = Webhook(secret).verify(seen.body, seen.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"endpoint": "a"}


async def test_an_unexpected_error_is_a_counted_failed_attempt_not_an_escape() -> None:
    class Broken:
        def post(self, *_args: object, **_kwargs: object) -> object:
            raise RuntimeError("a bug below us")

    result = await deliver(
        Broken(),  # type: ignore[arg-type]
        endpoint("hook", "http://127.0.0.1:9/hook"),
        event_id="evt_1",
        payload=b"{}",
        now=time.time(),
    )
    assert result.outcome is AttemptOutcome.RETRY  # retried on the ladder, and counted
    assert result.status is None
    assert result.error == "RuntimeError: a bug below us"
