"""Sending one signed webhook request, to an address a tenant named: under the platform's
outbound rules (tether.outbound)."""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp

from tether.api.webhook import signature
from tether.outbound import LOOPBACK_NAMES, PrivateAddress, PublicResolver, literal_refusal
from tether.settings import Settings

USER_AGENT = "Tether-Webhooks/1"


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
