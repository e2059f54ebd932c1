"""API keys, kept in Secrets, map to tenant namespaces; every request is confined to its own."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging

from aiohttp import web
from kubernetes_asyncio import watch as kube_watch

from tether.kube import Kube

from .errors import ApiError

API_KEY_LABEL = "tether.dev/api-key=true"
TENANT = web.RequestKey("tenant", str)
"""The namespace of the tenant whose API key the request presented."""

log = logging.getLogger("tether.gateway")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Secrets labelled tether.dev/api-key=true in the system namespace, each holding `key` and
    `namespace`. Listed once, then watched: a new or revoked key takes effect within a moment,
    and a request never costs an API call."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._keys: dict[str, tuple[bytes, str]] = {}  # Secret name -> (digest, tenant)

    def tenant(self, key: str) -> str | None:
        digest = _digest(key)
        found = None
        for known, namespace in self._keys.values():
            if hmac.compare_digest(known, digest):
                found = namespace
        return found

    async def load(self) -> str:
        """List the keys; returns the resourceVersion to watch from."""
        listed = await self.kube.core.list_namespaced_secret(
            self.namespace, label_selector=API_KEY_LABEL
        )
        self._keys = dict(filter(None, (_entry(item) for item in listed.items)))
        return listed.metadata.resource_version

    async def watch(self) -> None:
        """Keep the keys current until cancelled; relist after any interruption."""
        version = None
        while True:
            try:
                version = version or await self.load()
                async with kube_watch.Watch() as stream:
                    async for event in stream.stream(
                        self.kube.core.list_namespaced_secret,
                        self.namespace,
                        label_selector=API_KEY_LABEL,
                        resource_version=version,
                        timeout_seconds=300,
                    ):
                        secret = event["object"]
                        version = secret.metadata.resource_version
                        entry = _entry(secret)
                        if event["type"] == "DELETED" or entry is None:
                            self._keys.pop(secret.metadata.name, None)
                        else:
                            self._keys[entry[0]] = entry[1]
            except asyncio.CancelledError:
                raise
            except Exception:  # the watch broke (410 Gone, network): list again shortly
                log.warning("API key watch interrupted; listing again", exc_info=True)
                version = None
                await asyncio.sleep(1)


def _entry(secret) -> tuple[str, tuple[bytes, str]] | None:
    data = secret.data or {}
    if "key" not in data or "namespace" not in data:
        return None
    key = base64.b64decode(data["key"]).decode()
    namespace = base64.b64decode(data["namespace"]).decode()
    return secret.metadata.name, (_digest(key), namespace)


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer …` header."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def presented_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or bearer_token(request)


def tenant_middleware(keys_of):
    """The public API's gate: the API key presented names the tenant, in request[TENANT]."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        key = presented_key(request)
        if not key:
            raise ApiError(401, "missing API key: send it in the x-goog-api-key header")
        namespace = keys_of(request.config_dict).tenant(key)
        if namespace is None:
            raise ApiError(401, "API key not valid")
        request[TENANT] = namespace
        return await handler(request)

    return middleware
