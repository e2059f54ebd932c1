"""What the gateway's handlers share: built in the app's cleanup context, typed by AppKey."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether.catalog import Catalog
from tether.kube import Kube
from tether.providers.registry import Providers
from tether.settings import Settings
from tether.store.events import EventLog
from tether.store.model_slots import ModelSlots
from tether.store.outputs import Outputs
from tether.store.run_store import RunStore

from .auth import TENANT, ApiKeys
from .errors import ApiError, not_found


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
        """The tenant's interaction, or the API's 404 (one being deleted is gone already), with
        its ending as soon as it was announced."""
        obj = await self.kube.get("interactions", namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            raise not_found("interaction", name)
        return await self.events.as_announced(obj)

    async def page(
        self, plural: str, namespace: str, limit: int, token: str, **options: Any
    ) -> dict[str, Any]:
        """One page of a tenant's resources, from `token` (a continue token of the API
        server's); a token it never issued, or one compacted away, is the API's 400."""
        if token:
            options["_continue"] = token
        try:
            return await self.kube.list(plural, namespace, limit=limit, **options)
        except ApiException as error:
            # 410: the token's resource version was compacted away; 400 or a 504 "too large
            # resource version": a token the API server never issued
            too_large = "Too large resource version" in str(error.body or "")
            if token and (error.status in (400, 410) or too_large):
                raise ApiError(
                    400, f"page_token {token!r} is not valid or has expired; list again without it"
                ) from error
            raise


SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("state", State)


def addressed(request: web.Request) -> tuple[State, str, str]:
    """What a request to /interactions/{id}… is about: the state, the tenant, the interaction."""
    return request.config_dict[STATE], request[TENANT], request.match_info["id"]
