"""The gateway: the public API for tenants on one port, the internal API for sandboxes on another.

    public port (TETHER_PORT), create_app():
        /v1/…, /v1beta/…   public_api(): an API key names the tenant (auth.tenant_middleware)
        /upload/v1…/…      upload_api(): the same gate, for resumable file uploads
        /healthz, /metrics, /openapi.json: for anyone
    internal port (TETHER_INTERNAL_PORT), create_internal_app():
        /internal/v1/…     internal.internal_api(): a run token names the run
        /internal/egress/… egress.egress_api(): the egress proxy reports refusals
        /healthz

Each API is a sub-application with its own gate, and each port serves one API only: a
sandbox's NetworkPolicy opens the internal port and nothing else of the gateway.
`create_app(settings)` makes its connections at startup; `create_app(state=...)` serves the
connections it is given. The internal app shares the public app's connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from tether.catalog import Catalog
from tether.kube import Kube
from tether.providers.registry import Providers
from tether.settings import Settings
from tether.store import connection
from tether.store.events import EventLog
from tether.store.model_slots import ModelSlots
from tether.store.outputs import Outputs
from tether.store.run_store import RunStore
from tether.tasks import stop

from . import (
    agents,
    credentials,
    egress,
    environment_files,
    environments,
    files,
    interactions,
    internal,
    triggers,
    webhooks,
)
from .auth import ApiKeys, tenant_middleware
from .errors import MAX_BODY_BYTES, error_middleware
from .metrics import metrics_endpoint, metrics_middleware
from .openapi import PREFIXES, openapi_document
from .parsing import interaction_id_middleware
from .state import SETTINGS, STATE, State

MAX_LINE_BYTES = 32 * 1024
"""The longest request line (URL) and header field the gateway reads."""


async def _connections(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    kube = await Kube.connect(settings, component="tether-gateway")
    redis = connection.connect(settings)
    keys = ApiKeys(kube, settings.system_namespace)
    await keys.load()  # serve no request before the keys are known
    catalog = Catalog(kube, settings.system_namespace)
    watching = [asyncio.create_task(keys.watch()), asyncio.create_task(catalog.keep_current())]
    app[STATE] = State(
        settings=settings,
        kube=kube,
        events=EventLog(redis, settings.event_ttl_seconds),
        keys=keys,
        run_store=RunStore(redis, settings.retention_seconds),
        outputs=Outputs(redis, settings.retention_seconds),
        catalog=catalog,
        providers=Providers(kube),
        slots=ModelSlots(redis),
    )
    yield
    await asyncio.gather(*(stop(task) for task in watching))
    await redis.aclose()
    await kube.close()


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def public_api() -> web.Application:
    """The Interactions API as tenants call it; mounted once per version prefix."""
    tenant = tenant_middleware(lambda config: config[STATE].keys)
    api = web.Application(middlewares=[tenant, interaction_id_middleware])
    interactions.add_routes(api)
    files.add_routes(api)
    agents.add_routes(api)
    environments.add_routes(api)
    credentials.add_routes(api)
    webhooks.add_routes(api)
    triggers.add_routes(api)
    environment_files.add_routes(api)
    return api


def upload_api() -> web.Application:
    """The resumable uploads of the SDK's `environments.files.upload` (/upload/<version>/…)."""
    tenant = tenant_middleware(lambda config: config[STATE].keys)
    api = web.Application(middlewares=[tenant])
    environment_files.add_upload_routes(api)
    return api


def create_app(settings: Settings | None = None, *, state: State | None = None) -> web.Application:
    settings = settings or (state.settings if state else Settings())
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
        # aiohttp answers a request line or header over these limits itself, in plain text,
        # before any middleware runs; 8 KiB (its default) is too little for a list URL with
        # many label filters and a page token, so only absurd requests meet that answer.
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    app[SETTINGS] = settings
    app[MAX_BODY_BYTES] = settings.max_body_bytes
    if state is None:
        app.cleanup_ctx.append(_connections)
    else:
        app[STATE] = state
    for prefix in PREFIXES:
        app.add_subapp(prefix, public_api())
        app.add_subapp(f"/upload{prefix}", upload_api())
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    return app


def create_internal_app(public: web.Application) -> web.Application:
    """The internal port's application, on the connections of `public` (start that first)."""
    settings = public[SETTINGS]
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
    )
    app[SETTINGS] = settings
    app[MAX_BODY_BYTES] = settings.max_body_bytes
    if STATE in public:
        app[STATE] = public[STATE]
    else:

        async def share(_: web.Application) -> None:
            app[STATE] = public[STATE]

        app.on_startup.append(share)
    app.add_subapp("/internal/v1", internal.internal_api())
    app.add_subapp("/internal/egress", egress.egress_api())
    app.router.add_get("/healthz", healthz)
    return app
