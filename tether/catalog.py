"""Where a model or agent id leads: the tenant's own resources first, then the platform's."""

from __future__ import annotations

import re
from typing import Any

from tether.api.model import ModelSpec
from tether.kube import Kube
from tether.providers import Provider, ProviderError, provider_for

_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


async def find(kube: Kube, plural: str, namespaces: list[str], id_: str) -> dict[str, Any] | None:
    """The Model or Agent a client's id names, by resource name or by one of its aliases."""
    if _RESOURCE_NAME.match(id_) and len(id_) <= 253:
        for namespace in namespaces:
            if found := await kube.get(plural, namespace, id_):
                return found
    for namespace in namespaces:
        for item in (await kube.list(plural, namespace))["items"]:
            if id_ in (item.get("spec", {}).get("aliases") or []):
                return item
    return None


class Providers:
    """Provider clients for Model resources: one per Model version and credential, reused."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: dict[tuple, Provider] = {}

    async def for_model(self, model: dict[str, Any]) -> Provider:
        spec = ModelSpec.from_kube(model["spec"])
        meta = model["metadata"]
        api_key = None
        if spec.credentials:
            ref = spec.credentials.secret_ref
            api_key = await self.kube.secret_value(meta["namespace"], ref.name, ref.key)
            if api_key is None:
                raise ProviderError(
                    "credentials_missing",
                    f"model {meta['name']!r} needs key {ref.key!r} of Secret {ref.name!r}, "
                    "which does not exist",
                )
        key = (meta["uid"], meta["resourceVersion"], api_key)
        if key not in self._cache:
            self._cache[key] = provider_for(spec, api_key)
        return self._cache[key]
