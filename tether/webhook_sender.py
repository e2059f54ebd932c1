"""Sending one signed webhook request. The platform calls addresses its tenants name, so it
refuses private, loopback and link-local ones (its own services, the node, a cloud's metadata
server) unless the platform allows them (TETHER_WEBHOOK_ALLOW_PRIVATE, as `make up` does). The
check is on the address the request connects to, after resolution, so a name that resolves to a
private address is refused too, and no second lookup can change it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tether.api.webhook import signature
from tether.settings import Settings

USER_AGENT = "Tether-Webhooks/1"
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


@dataclass
class Attempt:
    """What came of one request: the endpoint's status code, or why there was none."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def logged(self, when: str, message_id: str, event: str, number: int) -> dict[str, Any]:
        """The attempt as the endpoint's delivery log shows it."""
        entry = {
            "time": when,
            "webhook_id": message_id,
            "event": event,
            "attempt": number,
            "status_code": self.status,
        }
        return entry | ({"error": self.error} if self.error else {})

    def outcome(self) -> str:
        return f"answered {self.status}" if self.status else f"was not reached: {self.error}"


class Sender:
    """Deliveries go out through one HTTP client, which follows no redirects (a redirect to a
    private address would get around the check)."""

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.webhook_allow_private
        self.loopback = settings.webhook_loopback_host
        connector = aiohttp.TCPConnector(resolver=None if self.allow_private else PublicResolver())
        self.http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds),
            headers={"User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    def _target(self, uri: str) -> str:
        """Where to connect: the host's loopback is reached by its alias from inside pods."""
        parts = urllib.parse.urlsplit(uri)
        if not self.loopback or parts.hostname not in LOOPBACK_NAMES:
            return uri
        netloc = self.loopback + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    async def send(
        self, uri: str, message_id: str, body: dict[str, Any], secrets_: list[str]
    ) -> Attempt:
        """POST one message, signed with every secret given, at this moment's timestamp."""
        if why := literal_refusal(uri, self.allow_private):
            return Attempt(None, why)
        payload = json.dumps(body, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secrets_, message_id, timestamp, payload),
        }
        try:
            async with self.http.post(
                self._target(uri), data=payload, headers=headers, allow_redirects=False
            ) as answer:
                await answer.read()
                return Attempt(answer.status)
        except aiohttp.ClientConnectorError as error:
            cause = error.os_error
            return Attempt(None, str(cause) if isinstance(cause, PrivateAddress) else str(error))
        except (aiohttp.ClientError, TimeoutError) as error:
            return Attempt(None, f"{type(error).__name__}: {error}" if str(error) else "timed out")
