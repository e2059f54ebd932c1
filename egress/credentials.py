"""The credentials a run's requests carry: read from the tenant's Secret, opened with the
proxy's key, and put into a request (a header, or a placeholder replaced in headers or the
query). OAuth2 credentials are exchanged for an access token at their token URL, kept until
shortly before it expires.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from mitmproxy import http

from tether.api.common import AllowlistEntry
from tether.api.credential import CREDENTIAL_LABEL, StoredCredential, placeholder, secret_name
from tether.egress import keys
from tether.kube import Kube

FRESH_SECONDS = 5.0
"""How long an opened credential is used before its Secret is read again (an update or a
delete takes effect within this)."""


class CredentialError(Exception):
    """A credential that cannot be used now: gone, unopenable, or its token server refused."""


@dataclass
class Opened:
    credential: StoredCredential
    values: dict[str, str]
    read_at: float


@dataclass
class Vault:
    kube: Kube
    root: bytes
    session: aiohttp.ClientSession
    _opened: dict[tuple[str, str], Opened] = field(default_factory=dict)
    _tokens: dict[tuple[str, str, str], tuple[str, float]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def open(self, namespace: str, credential: str) -> Opened:
        kept = self._opened.get((namespace, credential))
        if kept and time.monotonic() - kept.read_at < FRESH_SECONDS:
            return kept
        try:
            secret = await self.kube.core.read_namespaced_secret(secret_name(credential), namespace)
        except ApiException as error:
            raise CredentialError(f"credential {credential!r} is gone") from error
        found = self.kube.api.sanitize_for_serialization(secret)
        if (found["metadata"].get("labels") or {}).get(CREDENTIAL_LABEL) != credential:
            raise CredentialError(f"credential {credential!r} is gone")
        stored = StoredCredential.from_secret(found)
        try:
            values = keys.unseal(self.root, namespace, credential, stored.sealed)
        except keys.Unsealable as error:
            raise CredentialError(str(error)) from error
        opened = Opened(stored, values, time.monotonic())
        self._opened[(namespace, credential)] = opened
        return opened

    async def inject(
        self, flow: http.HTTPFlow, namespace: str, entry: AllowlistEntry, host: str
    ) -> list[str]:
        """Put the entry's credential into the request; the secret strings it put there (for
        the response to be scrubbed of)."""
        opened = await self.open(namespace, entry.credential or "")
        stored, values, config = opened.credential, opened.values, opened.credential.config
        if stored.type == "bearer_token":
            prefix = config.get("prefix", "Bearer")
            token = values["token"]
            flow.request.headers[config.get("header_name") or "Authorization"] = (
                f"{prefix} {token}" if prefix else token
            )
            return [token]
        if stored.type == "oauth2":
            token = await self._access_token(namespace, stored, values)
            flow.request.headers["Authorization"] = f"Bearer {token}"
            return [token]
        trusted = config.get("trusted_domains")
        if trusted and not any(AllowlistEntry(domain=d).matches(host) for d in trusted):
            return []
        marker, value = placeholder(stored.id), values["value"]
        locations = config.get("injection_location") or []
        if "header" in locations:
            for name, given in list(flow.request.headers.items(multi=True)):
                if marker in given:
                    flow.request.headers[name] = given.replace(marker, value)
        if "query" in locations and marker in flow.request.path:
            flow.request.path = flow.request.path.replace(marker, value)
        return [value]

    async def _access_token(
        self, namespace: str, stored: StoredCredential, values: dict[str, str]
    ) -> str:
        key = (namespace, stored.id, values["refresh_token"])
        async with self._lock:  # one refresh at a time, not one per waiting request
            token, until = self._tokens.get(key, ("", 0.0))
            if token and time.monotonic() < until:
                return token
            config = stored.config
            form = {
                "grant_type": "refresh_token",
                "refresh_token": values["refresh_token"],
                "client_id": config.get("client_id", ""),
                "client_secret": values["client_secret"],
            }
            if scopes := config.get("scopes"):
                form["scope"] = " ".join(scopes)
            try:
                async with self.session.post(config["token_url"], data=form) as response:
                    answer: dict[str, Any] = await response.json(content_type=None)
                    if response.status != 200 or "access_token" not in answer:
                        raise CredentialError(
                            f"the token server of {stored.id!r} answered {response.status}"
                        )
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                raise CredentialError(f"the token server of {stored.id!r}: {error}") from error
            lifetime = float(answer.get("expires_in") or 300)
            self._tokens[key] = (answer["access_token"], time.monotonic() + lifetime * 0.9)
            return answer["access_token"]
