"""Provider clients for resolved Models: one per Model version and credential, reused."""

from __future__ import annotations

from tether.catalog import ResolvedModel
from tether.kube import Kube
from tether.providers import Provider, ProviderError, provider_for


class Providers:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: dict[tuple[str, str | None], Provider] = {}

    async def for_model(self, model: ResolvedModel) -> Provider:
        api_key = None
        if credentials := model.spec.credentials:
            ref = credentials.secret_ref
            api_key = await self.kube.secret_value(model.namespace, ref.name, ref.key)
            if api_key is None:
                raise ProviderError(
                    "credentials_missing",
                    f"model {model.name!r} needs key {ref.key!r} of Secret {ref.name!r}, "
                    "which does not exist",
                )
        key = (model.version, api_key)
        if key not in self._cache:
            self._cache[key] = provider_for(model.spec, api_key)
        return self._cache[key]
