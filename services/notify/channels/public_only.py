"""An HTTP transport that connects to public internet addresses only: Web Push's.

A push endpoint is chosen by a device, and a public-looking name can resolve to loopback,
a private network or the cloud's metadata address (169.254.169.254). The check is made
where the connection is made, on the addresses connected to: a check before the request
would leave a second lookup that a rebinding DNS server could answer differently.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address inside


def is_public(address: str) -> bool:
    """Not loopback, private, link-local, shared (CGNAT), reserved, unspecified or multicast,
    nor such an IPv4 address inside an IPv6 one (mapped, NAT64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)))
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses it when any of its addresses is not public, and
    connects to the addresses it checked. TLS still verifies the host name: httpcore takes
    it from the URL, not from the address."""

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    # The signatures are httpcore's (hence the `timeout` parameters).
    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror: no such name
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        refused = [a for a in addresses if not is_public(a)]
        if refused or not addresses:
            log.warning("refused to connect to %s: it resolves to %s, not a public address",
                        host, ", ".join(refused) or "nothing")
            raise httpcore.ConnectError(f"{host} is not at a public address")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(host)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def public_only_transport(*, limits: httpx.Limits,
                          resolver: Resolver = resolve) -> httpx.AsyncHTTPTransport:
    """httpx's own transport with a connection pool on `PublicOnlyBackend`. No proxy: one
    from HTTPS_PROXY would connect where it likes (a client with a transport of its own
    ignores the *_PROXY variables)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx takes no network backend (its transport builds its httpcore pool without one),
    # so its pool is replaced by one built as httpx builds it, with ours. A test sends a
    # request through this transport to a listening loopback server and sees it refused.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PublicOnlyBackend(resolver),
    )
    return transport
