"""URL safety for webhook endpoints (SSRF).

Three layers, each enough on its own for the case it covers:

1. ``check_url`` when the configuration loads and again right before every attempt: the scheme
   (https unless ``allow_http``), no userinfo, a host written plainly (no percent-encoding, NUL
   or control character; valid DNS labels and strict IDNA), and an IP-literal host must be
   global.
2. ``SafeResolver`` wraps aiohttp's resolver and drops every non-global address a hostname
   resolves to (``localhost``, internal DNS names, DNS rebinding); it raises when none remain.
3. ``guarded_socket_factory`` is the connector's ``socket_factory``: it sees the address of
   every socket aiohttp is about to connect, including IP literals, for which aiohttp never
   calls the resolver. It refuses non-global addresses before ``connect()``.

Redirects are never followed (``allow_redirects=False`` in ``delivery.py``), so the only host
ever contacted is the configured one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import unquote

import idna
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from batchd.errors import WebhookError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


# Special-purpose blocks that Python 3.11's ``is_global`` still calls global (IANA special
# registries): IETF protocol assignments, site-local IPv6 (deprecated, still routed inside
# sites), and the IPv6 documentation prefix of RFC 9637.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n) for n in ("192.0.0.0/24", "fec0::/10", "3fff::/20", "2001:db8::/32")
)


class AddressNotAllowed(OSError):
    """A connection to a non-global address was refused (an ``OSError`` so that aiohttp reports
    it like any other connection failure)."""


def is_allowed_address(ip: str | IPAddress) -> bool:
    """True for a global unicast address. IPv4 embedded in IPv6 (mapped, 6to4, Teredo, NAT64) is
    judged by the IPv4 address it carries."""
    try:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        return False
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_allowed_address(embedded)
    return (
        address.is_global
        and not (
            address.is_multicast
            or address.is_unspecified
            or address.is_reserved
            or address.is_loopback
            or address.is_link_local
        )
        and not any(address in net for net in _NOT_GLOBAL)
    )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _looks_numeric(host: str) -> bool:
    """``2130706433``, ``127.1``, ``0x7f.0.0.1``: legacy IPv4 spellings a resolver may accept."""
    labels = host.rstrip(".").split(".")
    return bool(labels) and all(_NUMERIC_LABEL.match(label) for label in labels)


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Refuse an unsafe webhook URL with a ``WebhookError`` (the message names the problem)."""
    control = next((c for c in url if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if control is not None:  # a URL parser drops tabs and newlines silently: not as written
        raise WebhookError(f"webhook url contains a control character ({control!r})")
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise WebhookError("webhook url is not a valid URL") from exc
    if parsed.scheme not in ("https", "http"):
        raise WebhookError(f"webhook url scheme must be https, not {parsed.scheme!r}")
    if parsed.scheme == "http" and not allow_http:
        raise WebhookError("webhook url must use https (set allow_http to permit http)")
    if parsed.user is not None or parsed.password is not None:
        raise WebhookError("webhook url may not contain a user name or password")
    host = parsed.raw_host
    if not host:
        raise WebhookError("webhook url has no host")
    check_host_syntax(host)
    if not allow_private:
        check_host(host)


def check_host_syntax(host: str) -> None:
    """A host the resolver would read as written: no percent-encoding (``%31%32%37.0.0.1`` is
    127.0.0.1 to some parsers and a name to others), no NUL, control or space character, and
    every label a valid DNS label or a valid IDNA A-label (``xn--localhost-`` is not)."""
    if _ip_literal(host) is not None:
        return
    decoded = unquote(host, errors="replace")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in decoded):
        raise WebhookError(f"webhook host {host!r} contains a NUL, control or space character")
    if "%" in host:
        raise WebhookError(
            f"webhook host {host!r} is percent-encoded (it decodes to {decoded!r}); "
            "write the host name itself"
        )
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        raise WebhookError(f"webhook host {host!r} is not a valid host name (1-253 characters)")
    for label in name.split("."):
        problem = _label_problem(label)
        if problem:
            raise WebhookError(f"webhook host {host!r} is not a valid host name: {problem}")


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$", re.IGNORECASE)


def _label_problem(label: str) -> str | None:
    if label.lower().startswith("xn--"):  # an A-label: it must decode and encode back, strictly
        try:
            valid = idna.encode(idna.decode(label)).decode("ascii") == label.lower()
        except (idna.IDNAError, UnicodeError):
            valid = False
        if not valid:
            return f"label {label!r} is not a valid internationalized name (IDNA)"
    if not _LABEL.match(label):
        return f"label {label!r} is not 1-63 letters, digits, '-' or '_' (no '-' at its ends)"
    return None


def check_host(host: str) -> None:
    """The host part of a URL for an endpoint that does not allow private addresses."""
    literal = _ip_literal(host)
    if literal is not None:
        if not is_allowed_address(literal):
            raise WebhookError(
                f"webhook host {host} is not a global address (set allow_private to permit it)"
            )
        return
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise WebhookError(f"webhook host {host} is local (set allow_private to permit it)")
    if _looks_numeric(name):
        raise WebhookError(f"webhook host {host} is not a canonical IP address")


class SafeResolver(AbstractResolver):
    """A resolver that keeps only global addresses (and refuses a name with none)."""

    def __init__(self, base: AbstractResolver | None = None) -> None:
        self._base = base if base is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._base.resolve(host, port, family)
        allowed = [r for r in results if is_allowed_address(r["host"])]
        if not allowed:
            raise AddressNotAllowed(f"{host} resolves to no global address")
        return allowed

    async def close(self) -> None:
        await self._base.close()


def guarded_socket_factory() -> Callable[[AddrInfoType], socket.socket]:
    """A ``TCPConnector(socket_factory=...)`` that refuses to open a socket to a non-global
    address: the connect-time check that also covers IP-literal hosts."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not is_allowed_address(str(sockaddr[0])):
            raise AddressNotAllowed(f"connection to {sockaddr[0]} refused: not a global address")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
