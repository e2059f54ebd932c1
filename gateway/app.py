"""The gateway application: `create_app(settings)`; state lives in the cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tether import redis_connection
from tether.catalog import Providers
from tether.events import EventLog
from tether.kube import Kube
from tether.outputs import Outputs
from tether.run_store import RunStore
from tether.settings import Settings

from . import files, interactions, sandbox_api
from .auth import ApiKeys, auth_middleware
from .errors import MAX_BODY_BYTES, error_middleware
from .metrics import metrics_endpoint, metrics_middleware
from .openapi import openapi_document
from .parsing import interaction_id_middleware
from .state import SETTINGS, STATE, State

MAX_LINE_BYTES = 32 * 1024
"""The longest request line (URL) and header field the gateway reads."""


async def _connections(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    kube = await Kube.connect(settings, component="tether-gateway")
    redis = redis_connection.connect(settings)
    keys = ApiKeys(kube, settings.system_namespace)
    await keys.load()  # serve no request before the keys are known
    watching = asyncio.create_task(keys.watch())
    app[STATE] = State(
        settings=settings,
        kube=kube,
        events=EventLog(redis, settings.event_ttl_seconds),
        keys=keys,
        run_store=RunStore(redis, settings.retention_seconds),
        outputs=Outputs(redis, settings.retention_seconds),
        providers=Providers(kube),
    )
    yield
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    await redis.aclose()
    await kube.close()


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            metrics_middleware,
            error_middleware,
            auth_middleware(lambda app: app[STATE].keys),
            interaction_id_middleware,
        ],
        # aiohttp answers a request line or header over these limits itself, in plain text,
        # before any middleware runs; 8 KiB (its default) is too little for a list URL with
        # many label filters and a page token, so only absurd requests meet that answer.
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    app[SETTINGS] = settings
    app[MAX_BODY_BYTES] = settings.max_body_bytes
    app.cleanup_ctx.append(_connections)
    interactions.add_routes(app)
    files.add_routes(app)
    sandbox_api.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    return app
