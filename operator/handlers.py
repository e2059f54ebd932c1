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
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import start_http_server
from redis.asyncio import Redis

from tether.api import GROUP, VERSION
from tether.api.interaction import CANCEL_ANNOTATION, TERMINAL_PHASES
from tether.events import EventLog
from tether.kube import Kube
from tether.lifecycle import erase
from tether.settings import Settings

from . import metrics
from .agent_run import delete_children, finish_agent_run, observe_start, start_agent_run
from .context import Context
from .model_run import Outcome, finish_now, run_model_interaction
from .sandbox_pod import INTERACTION_LABEL, SANDBOX_LABEL

log = logging.getLogger("tether.operator")


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
    is_agent = bool(body.spec.get("agent"))
    if CANCEL_ANNOTATION in body.metadata.annotations:
        if is_agent:
            await delete_children(ctx, body.metadata.namespace, uid)
            await finish_now(ctx, obj, Outcome("cancelled"), "agent")
        elif not ctx.runs.cancel(uid):
            await finish_now(ctx, obj, Outcome("cancelled"))
        return
    if not is_agent:
        ctx.runs.start(uid, run_model_interaction(ctx, obj))
    elif sandbox := body.status.get("sandboxPod"):
        if type is None:  # the operator (re)started: is the sandbox still there?
            try:
                await ctx.kube.core.read_namespaced_pod(sandbox, body.metadata.namespace)
            except ApiException as error:
                if error.status != 404:
                    raise
                await finish_agent_run(ctx, obj, None)
    else:
        ctx.runs.start(uid, _start_once(ctx, obj))


async def _start_once(ctx: Context, obj: dict[str, Any]) -> None:
    """Start an agent run; a stale event for it never starts it again in this process, and a
    start that breaks ends the run with the reason instead of leaving it queued in silence."""
    try:
        await start_agent_run(ctx, obj)
    except Exception as error:
        log.exception("could not start the sandbox of %s", obj["metadata"]["name"])
        message = f"the sandbox could not be started ({type(error).__name__}: {error})"[:2000]
        await finish_now(
            ctx,
            obj,
            Outcome("failed", errors=[{"code": "sandbox_start_failed", "message": message}]),
            "agent",
        )
    finally:
        ctx.runs.finished(obj["metadata"]["uid"])


@kopf.on.event("", "v1", "pods", labels={SANDBOX_LABEL: kopf.PRESENT})
async def sandbox_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A sandbox pod ended: finish its agent run from what the run reported."""
    ctx: Context = memo.ctx
    uid = body.metadata.uid
    phase = body.status.get("phase")
    if (
        type == "DELETED"
        or body.metadata.get("deletionTimestamp")
        or phase in ("Succeeded", "Failed")
    ):
        ctx.active_sandboxes.discard(uid)
    else:
        if phase == "Running" and uid not in ctx.active_sandboxes:
            observe_start(dict(body))
        ctx.active_sandboxes.add(uid)
    metrics.ACTIVE_SANDBOXES.set(len(ctx.active_sandboxes))
    if type == "DELETED" or phase not in ("Succeeded", "Failed"):
        return
    namespace = body.metadata.namespace
    interaction = await ctx.kube.get(
        "interactions", namespace, body.metadata.labels[INTERACTION_LABEL]
    )
    if interaction is None:
        return  # the garbage collector removes what a deleted interaction owned
    if (interaction.get("status") or {}).get("phase") in TERMINAL_PHASES:
        await delete_children(ctx, namespace, interaction["metadata"]["uid"])
        return
    await finish_agent_run(ctx, interaction, dict(body))


async def sweep_expired(ctx: Context) -> None:
    """Every sweep interval, delete finished interactions older than the retention period."""
    while True:
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)
        try:
            await sweep_once(ctx, dt.datetime.now(dt.UTC))
        except Exception:  # a failed sweep is retried at the next interval, never fatal
            log.exception("retention sweep failed")


async def sweep_once(ctx: Context, now: dt.datetime) -> list[str]:
    """Erase the interactions that ended before the retention cutoff."""
    cutoff = now - dt.timedelta(seconds=ctx.settings.retention_seconds)
    found = await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "interactions")
    deleted = []
    for item in found["items"]:
        status = item.get("status") or {}
        updated = status.get("updated")
        if status.get("phase") in TERMINAL_PHASES and updated and _parse(updated) < cutoff:
            meta = item["metadata"]
            await erase(ctx.kube, ctx.events, ctx.run_store, meta["namespace"], meta["name"])
            deleted.append(f"{meta['namespace']}/{meta['name']}")
    if deleted:
        log.info("retention: deleted %d finished interactions", len(deleted))
    return deleted


def _parse(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
