from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from batchd.errors import WebhookError
from batchd.webhooks.urls import (
    AddressNotAllowed,
    SafeResolver,
    check_url,
    guarded_socket_factory,
    is_allowed_address,
)

PRIVATE_URLS = [
    "https://127.0.0.1/hook",
    "https://127.0.0.1:8443/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://api.localhost/hook",
    "https://[::1]/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.1/hook",
    "https://192.168.1.10/hook",
    "https://172.16.0.1/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[2002:7f00:1::]/hook",  # 6to4 carrying 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 carrying 169.254.169.254
    "https://224.0.0.1/hook",
    "https://255.255.255.255/hook",
    "https://127.1/hook",
    "https://2130706433/hook",
    "https://0x7f.0.0.1/hook",
    "https://192.0.0.8/hook",  # IETF protocol assignments: is_global says True
    "https://[fec0::1]/hook",  # site-local IPv6: is_global says True
    "https://[3fff::1]/hook",  # IPv6 documentation (RFC 9637): is_global says True
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_hosts_are_refused(url):
    with pytest.raises(WebhookError):
        check_url(url, allow_http=False, allow_private=False)


@pytest.mark.parametrize("url", PRIVATE_URLS[:16])
def test_private_hosts_are_allowed_when_the_endpoint_allows_them(url):
    check_url(url, allow_http=False, allow_private=True)


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/x", "https://93.184.216.34/x", "https://[2606:4700::1111]/x"],
)
def test_public_https_urls_pass(url):
    check_url(url, allow_http=False, allow_private=False)


def test_http_needs_allow_http():
    with pytest.raises(WebhookError):
        check_url("http://hooks.example.com/x", allow_http=False, allow_private=False)
    check_url("http://hooks.example.com/x", allow_http=True, allow_private=False)
    with pytest.raises(WebhookError):
        check_url("http://127.0.0.1:8080/x", allow_http=True, allow_private=False)
    check_url("http://127.0.0.1:8080/x", allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "https://user:pw@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "https:///nohost",
        "not a url",
    ],
)
def test_malformed_or_unsafe_urls_are_refused_even_when_private_is_allowed(url):
    with pytest.raises(WebhookError):
        check_url(url, allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("169.254.169.254", False),
        ("10.0.0.1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("240.0.0.1", False),
        ("not an address", False),
    ],
)
def test_is_allowed_address(address, allowed):
    assert is_allowed_address(address) is allowed


class _Static(AbstractResolver):
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_safe_resolver_drops_private_addresses():
    resolver = SafeResolver(_Static(["10.0.0.5", "93.184.216.34", "127.0.0.1"]))
    results = await resolver.resolve("hooks.example.com", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_safe_resolver_refuses_a_name_with_only_private_addresses():
    resolver = SafeResolver(_Static(["10.0.0.5", "::1"]))
    with pytest.raises(AddressNotAllowed):
        await resolver.resolve("internal.example.com", 443)


def test_the_socket_factory_refuses_private_addresses_before_connecting():
    factory = guarded_socket_factory()
    for addr in ("127.0.0.1", "10.0.0.1", "169.254.169.254"):
        with pytest.raises(AddressNotAllowed):
            factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, 80)))
    with pytest.raises(AddressNotAllowed):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0)))
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)))
    sock.close()
