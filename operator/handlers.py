"""kopf handlers: every Interaction event starts, cancels or ignores a run; nothing else.

Only `on.event` handlers watch Interactions, so kopf stores no diff-base or progress
annotations on them: inputs of any size never meet the 256 KiB annotation limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import kopf
from prometheus_client import start_http_server
from redis.asyncio import Redis

from tether.api import GROUP, VERSION
from tether.api.interaction import CANCEL_ANNOTATION, TERMINAL_PHASES
from tether.events import EventLog
from tether.kube import Kube
from tether.settings import Settings

from .context import Context
from .model_run import Outcome, finish_now, run_model_interaction

log = logging.getLogger("tether.operator")
AGENTS_UNAVAILABLE = Outcome(
    "failed",
    errors=[
        {
            "code": "agents_unavailable",
            "message": "this Tether version runs model interactions only; agent runs in "
            "sandbox pods are not available yet",
        }
    ],
)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # no k8s Event per handler: fewer writes per interaction
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.request_timeout = 60
    config = Settings()
    redis = Redis.from_url(config.redis_url)
    memo.ctx = Context(
        settings=config,
        kube=await Kube.connect(config, component="tether-operator"),
        events=EventLog(redis, config.event_ttl_seconds),
    )
    server, _thread = start_http_server(config.metrics_port, addr=config.host)
    log.info("metrics on http://%s:%d/metrics", config.host, server.server_port)
    memo.sweeper = asyncio.create_task(sweep_expired(memo.ctx))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.ctx
    memo.sweeper.cancel()
    await ctx.runs.shutdown()
    await ctx.events.redis.aclose()
    await ctx.kube.close()


@kopf.on.event(GROUP, VERSION, "interactions")
async def interaction_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.ctx
    uid = body.metadata.uid
    if type == "DELETED" or body.metadata.get("deletionTimestamp"):
        ctx.runs.forget(uid)
        return
    if body.status.get("phase") in TERMINAL_PHASES:
        return
    obj = dict(body)
    if CANCEL_ANNOTATION in body.metadata.annotations:
        if not ctx.runs.cancel(uid):
            await finish_now(ctx, obj, Outcome("cancelled"))
        return
    if body.spec.get("model"):
        ctx.runs.start(uid, run_model_interaction(ctx, obj))
    else:  # say so at once rather than leave the run queued forever
        await finish_now(ctx, obj, AGENTS_UNAVAILABLE)


async def sweep_expired(ctx: Context) -> None:
    """Every sweep interval, delete finished interactions older than the retention period."""
    while True:
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)
        try:
            await sweep_once(ctx, dt.datetime.now(dt.UTC))
        except Exception:  # a failed sweep is retried at the next interval, never fatal
            log.exception("retention sweep failed")


async def sweep_once(ctx: Context, now: dt.datetime) -> list[str]:
    """Delete (with their event logs) the interactions that ended before the retention cutoff."""
    cutoff = now - dt.timedelta(seconds=ctx.settings.retention_seconds)
    found = await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "interactions")
    deleted = []
    for item in found["items"]:
        status = item.get("status") or {}
        updated = status.get("updated")
        if status.get("phase") in TERMINAL_PHASES and updated and _parse(updated) < cutoff:
            meta = item["metadata"]
            await ctx.kube.delete("interactions", meta["namespace"], meta["name"])
            await ctx.events.delete(meta["namespace"], meta["name"])
            deleted.append(f"{meta['namespace']}/{meta['name']}")
    if deleted:
        log.info("retention: deleted %d finished interactions", len(deleted))
    return deleted


def _parse(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
