"""Provider clients for resolved Models: one per Model, reused until the Model or its credential
changes.

A credential is read from its Secret at most once per CREDENTIAL_SECONDS: a rotated key is in use
that soon after, and a call costs no API request (the kubelet treats mounted Secrets alike).
"""

from __future__ import annotations

import time

from tether.catalog import ResolvedModel
from tether.kube import Kube
from tether.providers import Provider, ProviderError, provider_for

CREDENTIAL_SECONDS = 5.0


class Providers:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: dict[tuple[str, str], tuple[tuple[str, str | None], Provider]] = {}
        """(namespace, Model) -> ((its version, its credential), the client for them)"""
        self._credentials: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        """(namespace, Secret, key) -> (when read, value)"""

    async def for_model(self, model: ResolvedModel) -> Provider:
        api_key = None
        if credentials := model.spec.credentials:
            ref = credentials.secret_ref
            api_key = await self._credential(model.namespace, ref.name, ref.key)
            if api_key is None:
                raise ProviderError(
                    "credentials_missing",
                    f"model {model.name!r} needs key {ref.key!r} of Secret {ref.name!r}, "
                    "which does not exist",
                )
        made_for, provider = self._cache.get((model.namespace, model.name), (None, None))
        if provider is None or made_for != (model.version, api_key):
            provider = provider_for(model.spec, api_key)
            self._cache[model.namespace, model.name] = ((model.version, api_key), provider)
        return provider

    async def _credential(self, namespace: str, name: str, key: str) -> str | None:
        read_at, value = self._credentials.get((namespace, name, key), (float("-inf"), None))
        if value is None or time.monotonic() - read_at > CREDENTIAL_SECONDS:
            value = await self.kube.secret_value(namespace, name, key)
            if value is not None:  # a missing one is read again the next time
                self._credentials[namespace, name, key] = (time.monotonic(), value)
        return value
