"""What the gateway's handlers share: built in the app's cleanup context, typed by AppKey."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tether.catalog import Catalog
from tether.kube import Kube
from tether.providers.registry import Providers
from tether.settings import Settings
from tether.store.events import EventLog
from tether.store.model_slots import ModelSlots
from tether.store.outputs import Outputs
from tether.store.run_store import RunStore

from .auth import TENANT, ApiKeys
from .errors import not_found


@dataclass
class State:
    """The gateway's connections and stores, built once in the app's cleanup context."""

    settings: Settings
    kube: Kube
    events: EventLog
    keys: ApiKeys
    run_store: RunStore
    outputs: Outputs
    catalog: Catalog
    providers: Providers
    slots: ModelSlots

    async def interaction(self, namespace: str, name: str) -> dict[str, Any]:
        """The tenant's interaction, or the API's 404 (one being deleted is gone already)."""
        obj = await self.kube.get("interactions", namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            raise not_found("interaction", name)
        return obj


SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("state", State)


def addressed(request: web.Request) -> tuple[State, str, str]:
    """What a request to /interactions/{id}… is about: the state, the tenant, the interaction."""
    return request.config_dict[STATE], request[TENANT], request.match_info["id"]
