"""The platform's own calls to addresses its tenants name (webhook deliveries, the MCP servers of
model interactions). It refuses private, loopback and link-local addresses (its own services,
the node, a cloud's metadata server) unless the platform allows them
(TETHER_WEBHOOK_ALLOW_PRIVATE, as `make up` does). The check is on the address the connection
is made to, after resolution, so a name that resolves to a private address is refused too, and
no second lookup can change it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable

import httpcore2
import httpx2
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tether.settings import Settings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class PrivateAddress(OSError):
    pass


def address_refusal(host: str, address: str) -> str | None:
    if ipaddress.ip_address(address.removeprefix("::ffff:")).is_global:
        return None
    return f"{host} is at {address}, a private address, and this platform calls public ones only"


def literal_refusal(uri: str, allow_private: bool) -> str | None:
    """Why a URI naming an address outright may not be called (names are checked when sent)."""
    host = urllib.parse.urlsplit(uri).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if allow_private else address_refusal(host, host)


class PublicResolver(AbstractResolver):
    """Resolves as usual, and refuses what resolves to a private address."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for result in found:
            if why := address_refusal(host, result["host"]):
                raise PrivateAddress(why)
        return found

    async def close(self) -> None:
        await self._resolver.close()


def url_problems(url: str, settings: Settings, field: str, what: str = "webhooks") -> list[str]:
    """What the platform's rules refuse in a URL a tenant gives it to call (its shape is the
    request model's): plain http where https is required, a host off the platform's list, a
    private address named outright."""
    problems = []
    if settings.webhook_require_https and not url.startswith("https://"):
        problems.append(f"{field}: this platform calls {what} over https only")
    host = urllib.parse.urlsplit(url).hostname or ""
    if settings.webhook_hosts and host not in settings.webhook_hosts:
        problems.append(
            f"{field}: this platform calls {what} on {', '.join(settings.webhook_hosts)} only"
        )
    if why := literal_refusal(url, settings.webhook_allow_private):
        problems.append(f"{field}: {why}")
    return problems


class PublicBackend(httpcore2.AsyncNetworkBackend):
    """httpx2's connections (the MCP SDK's client) under the same rule: the name is resolved
    here, each address checked, and the connection made to the checked address (TLS still
    verifies the name)."""

    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in found]
        for address in addresses:
            if why := address_refusal(host, address):
                raise httpcore2.ConnectError(why)
        return await self._backend.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(self, *args, **kwargs) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("the platform calls no unix socket a tenant names")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PublicTransport(httpx2.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self._pool._network_backend = PublicBackend()
