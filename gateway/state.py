"""What the gateway's handlers share: built in the app's cleanup context, typed by AppKey."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tether.catalog import Providers
from tether.events import EventLog
from tether.kube import Kube
from tether.outputs import Outputs
from tether.run_store import RunStore
from tether.settings import Settings

from .auth import ApiKeys
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
    providers: Providers

    async def interaction(self, namespace: str, name: str) -> dict[str, Any]:
        """The tenant's interaction, or the API's 404 (one being deleted is gone already)."""
        obj = await self.kube.get("interactions", namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            raise not_found("interaction", name)
        return obj


SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("state", State)
