"""Models and Agents as a tenant sees them: its own first, then the platform's.

An id names a resource or one of its aliases. An Agent may stand on a base agent, and that on
another, up to MAX_BASE_AGENTS deep.

With informers (the gateway's and the operator's), a lookup costs no API call: it is answered from
the watch. Only what the watch has not shown (a Model created a moment ago, a name that does not
exist) is asked of the API server, as it is whenever the watch is broken.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tether.api.agent import AgentSpec
from tether.api.model import ModelSpec
from tether.errors import RunError
from tether.informer import Informer
from tether.kube import Kube

MAX_BASE_AGENTS = 8
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def is_object_name(id_: str) -> bool:
    """Whether an id can be a Kubernetes object's name. Only such ids go into an API path: `.`,
    `..` and the like never reach the API server, where they would name something else."""
    return bool(_RESOURCE_NAME.match(id_)) and len(id_) <= 253


@dataclass(frozen=True)
class ResolvedModel:
    """The Model an id led to: where it lives, what it says, and the name its vendor knows."""

    namespace: str
    name: str
    version: str
    """uid and resourceVersion: a changed Model is a new version."""
    spec: ModelSpec

    @classmethod
    def from_kube(cls, obj: dict[str, Any]) -> ResolvedModel:
        meta = obj["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            version=f"{meta['uid']}/{meta['resourceVersion']}",
            spec=ModelSpec.from_kube(obj.get("spec") or {}),
        )

    @property
    def upstream(self) -> str:
        """The model name sent to the vendor."""
        return self.spec.upstream_model or self.name


class Catalog:
    """Finds a tenant's Models and Agents: its namespace first, then the system namespace."""

    def __init__(self, kube: Kube, system_namespace: str) -> None:
        """Answered from watches of Models and Agents once `keep_current` runs; from the API
        server until then."""
        self.system_namespace = system_namespace
        self.informers = {p: Informer(kube, p) for p in ("models", "agents")}
        """By plural."""

    async def keep_current(self) -> None:
        """Keep the informers current until cancelled."""
        await asyncio.gather(*(i.keep_current() for i in self.informers.values()))

    async def model(self, namespace: str, id_: str) -> ResolvedModel | None:
        found = await self._find("models", namespace, id_)
        return ResolvedModel.from_kube(found) if found else None

    async def agent(self, namespace: str, id_: str) -> dict[str, Any] | None:
        return await self._find("agents", namespace, id_)

    async def agent_chain(self, namespace: str, id_: str) -> tuple[str, list[AgentSpec]]:
        """The Agent an id names, with its base agents, most basic first."""
        found = await self.agent(namespace, id_)
        if found is None:
            raise RunError("agent_not_found", f"agent {id_!r} not found")
        name = found["metadata"]["name"]
        specs = [AgentSpec.from_kube(found.get("spec") or {})]
        while base := specs[0].base_agent:
            if len(specs) >= MAX_BASE_AGENTS:
                raise RunError(
                    "invalid_agent", f"agent {name!r} has too deep a chain of base agents"
                )
            parent = await self.agent(namespace, base)
            if parent is None:
                raise RunError("agent_not_found", f"base agent {base!r} of {name!r} not found")
            specs.insert(0, AgentSpec.from_kube(parent.get("spec") or {}))
        return name, specs

    async def _find(self, plural: str, namespace: str, id_: str) -> dict[str, Any] | None:
        """By resource name, then by alias; in the tenant's namespace, then the platform's."""
        namespaces = [namespace, self.system_namespace]
        return await self.informers[plural].lookup(
            lambda reads: _lookup(id_, namespaces, reads.get, reads.items)
        )


async def _lookup(
    id_: str,
    namespaces: list[str],
    get: Callable[[str, str], Awaitable[dict[str, Any] | None]],
    items: Callable[[str], Awaitable[list[dict[str, Any]]]],
) -> dict[str, Any] | None:
    if is_object_name(id_):
        for where in namespaces:
            if found := await get(where, id_):
                return found
    for where in namespaces:
        for item in await items(where):
            if id_ in (item.get("spec", {}).get("aliases") or []):
                return item
    return None
