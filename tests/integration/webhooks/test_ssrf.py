"""SSRF: private addresses are refused at every layer, proven against real loopback servers that
must never see a request. Each layer is tested on its own (the URL check inside ``deliver``, the
resolver, the connector's socket factory), plus a control showing the server is reachable."""

from __future__ import annotations

import socket
import time

import aiohttp
import pytest
from aiohttp import web

from batchd.clock import ManualClock
from batchd.store.base import DeliveryState, EventSpec
from batchd.store.memory import MemoryJobStore
from batchd.webhooks.delivery import deliver, make_session
from batchd.webhooks.schedule import AttemptOutcome
from batchd.webhooks.urls import AddressNotAllowed
from tests.integration.webhooks.conftest import (
    MappingResolver,
    ReceiverFactory,
    endpoint,
    notifier_for,
    pump,
)

BODY = b'{"data":{},"timestamp":"2026-01-01T00:00:00Z","type":"batch.created"}'


def _refusal(exc: BaseException) -> BaseException | None:
    return getattr(exc, "os_error", None) or exc.__cause__


async def test_control_the_loopback_server_is_reachable_when_private_is_allowed(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    async with make_session(allow_private=True) as session:
        result = await deliver(
            session, endpoint("a", receiver.url), event_id="evt_1", payload=BODY, now=time.time()
        )
    assert result.outcome is AttemptOutcome.DELIVERED
    assert len(receiver.seen) == 1


async def test_deliver_refuses_an_ip_literal_loopback_url(make_receiver: ReceiverFactory):
    receiver = await make_receiver()
    target = endpoint("a", receiver.url, allow_private=False)  # allow_http only
    async with make_session(allow_private=False) as session:
        result = await deliver(session, target, event_id="evt_1", payload=BODY, now=time.time())
    assert result.outcome is AttemptOutcome.FAIL
    assert result.error is not None and result.error.startswith("refused")
    assert receiver.seen == []


async def test_the_connector_alone_refuses_ip_literals(make_receiver: ReceiverFactory):
    """aiohttp never calls the resolver for an IP literal; the socket factory still sees it."""
    receiver = await make_receiver()
    async with make_session(allow_private=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.post(receiver.url, data=BODY, allow_redirects=False)
    assert isinstance(_refusal(info.value), AddressNotAllowed)
    assert receiver.seen == []


async def test_the_connector_alone_refuses_ipv6_loopback(make_receiver: ReceiverFactory):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        receiver = await make_receiver(host="::1")
    except OSError:
        pytest.skip("cannot bind ::1 here")
    async with make_session(allow_private=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.post(receiver.url, data=BODY, allow_redirects=False)
    assert isinstance(_refusal(info.value), AddressNotAllowed)
    assert receiver.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
    ],
)
async def test_the_connector_refuses_before_any_packet_is_sent(url: str):
    async with make_session(allow_private=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.post(url, data=BODY, allow_redirects=False)
    assert isinstance(_refusal(info.value), AddressNotAllowed)


async def test_localhost_is_refused_by_the_url_check_and_by_the_resolver(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    url = receiver.url.replace("127.0.0.1", "localhost")
    async with make_session(allow_private=False) as session:
        result = await deliver(
            session,
            endpoint("a", url, allow_private=False),
            event_id="evt_1",
            payload=BODY,
            now=time.time(),
        )
        assert result.outcome is AttemptOutcome.FAIL
        with pytest.raises(aiohttp.ClientConnectorError) as info:  # the resolver layer alone
            await session.post(url, data=BODY, allow_redirects=False)
    assert isinstance(_refusal(info.value), AddressNotAllowed)
    assert receiver.seen == []


async def test_a_hostname_resolving_to_a_private_address_is_refused(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    url = receiver.url.replace("127.0.0.1", "hooks.internal.test")
    resolver = MappingResolver({"hooks.internal.test": "127.0.0.1"})
    async with make_session(allow_private=False, resolver=resolver) as session:
        result = await deliver(
            session,
            endpoint("a", url, allow_private=False),
            event_id="evt_1",
            payload=BODY,
            now=time.time(),
        )
        with pytest.raises(aiohttp.ClientConnectorDNSError) as info:  # the resolver refuses
            await session.post(url, data=BODY, allow_redirects=False)
    assert isinstance(_refusal(info.value), AddressNotAllowed)
    assert resolver.asked == ["hooks.internal.test"] * 2
    assert result.outcome is AttemptOutcome.RETRY  # DNS may change: retried, never sent
    assert result.error is not None and result.error.startswith("refused")
    assert receiver.seen == []


async def test_the_same_hostname_is_delivered_when_private_is_allowed(
    make_receiver: ReceiverFactory,
):
    receiver = await make_receiver()
    url = receiver.url.replace("127.0.0.1", "hooks.internal.test")
    resolver = MappingResolver({"hooks.internal.test": "127.0.0.1"})
    async with make_session(allow_private=True, resolver=resolver) as session:
        result = await deliver(
            session, endpoint("a", url), event_id="evt_1", payload=BODY, now=time.time()
        )
    assert result.outcome is AttemptOutcome.DELIVERED
    assert len(receiver.seen) == 1


async def test_the_notifier_never_reaches_a_private_endpoint(make_receiver: ReceiverFactory):
    """End to end with the notifier's default sessions: the event is dead-lettered at once
    (retrying cannot make the URL safe) and the server sees nothing."""
    receiver = await make_receiver()
    clock = ManualClock(time.time())
    store = MemoryJobStore()
    event = await store.append_event(EventSpec("batch.created", {}), now=clock.now())
    notifier = notifier_for(store, [endpoint("a", receiver.url, allow_private=False)], clock)
    try:
        await pump(notifier)
    finally:
        await notifier.close()
    [delivery] = await store.deliveries_for(event.id)
    assert delivery.state == DeliveryState.DEAD
    assert receiver.seen == []
    types = [e.type for e in await store.list_events()]
    assert types == ["batch.created", "webhook.dead_letter"]


async def test_a_redirect_to_a_private_address_is_not_followed_even_when_private_is_allowed(
    make_receiver: ReceiverFactory,
):
    internal = await make_receiver()

    async def redirect(_request: web.Request, _index: int) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": internal.url})

    outer = await make_receiver(redirect)
    async with make_session(allow_private=True) as session:
        result = await deliver(
            session, endpoint("a", outer.url), event_id="evt_1", payload=BODY, now=time.time()
        )
    assert (result.outcome, result.status) == (AttemptOutcome.RETRY, 307)
    assert internal.seen == []
