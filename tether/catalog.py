"""Where a model or agent id leads: the tenant's own resources first, then the platform's."""

from __future__ import annotations

import re
from typing import Any

from tether.kube import Kube

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
