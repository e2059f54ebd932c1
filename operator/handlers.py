"""kopf handlers: every Interaction event starts, cancels or ignores a run; nothing else.

Only `on.event` handlers watch Interactions, so kopf stores no diff-base or progress
annotations on them: inputs of any size never meet the 256 KiB annotation limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import start_http_server

from tether import redis_connection
from tether.api import GROUP, VERSION
from tether.api.interaction import CANCEL_ANNOTATION, TERMINAL_PHASES
from tether.events import EventLog
from tether.kube import Kube
from tether.lifecycle import erase
from tether.providers import ProviderError
from tether.settings import Settings

from . import metrics
from .agent_run import agent_outcome, finish_agent_run, observe_start, start_agent_run
from .context import Context
from .ending import Outcome, conclude, delete_children, resume_ended
from .model_run import run_model_interaction
from .runs import RunCancelled
from .sandbox_pod import INTERACTION_LABEL, SANDBOX_LABEL

log = logging.getLogger("tether.operator")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # no k8s Event per handler: fewer writes per interaction
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.request_timeout = 60
    config = Settings()
    redis = redis_connection.connect(config)
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
    obj = dict(body)
    if body.status.get("phase") in TERMINAL_PHASES:
        if type is None:  # seen at (re)start: finish an ending a crash interrupted
            await resume_ended(ctx, obj)
        return
    is_agent = bool(body.spec.get("agent"))
    if CANCEL_ANNOTATION in body.metadata.annotations:
        if not ctx.runs.cancel(uid):  # not in flight here: end it now
            cancelled = (
                await agent_outcome(ctx, obj, None, phase="cancelled")
                if is_agent
                else Outcome("cancelled")
            )
            await conclude(ctx, obj, cancelled)
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
        await ctx.runs.interruptible(obj["metadata"]["uid"], start_agent_run(ctx, obj))
    except RunCancelled:
        await conclude(ctx, obj, await agent_outcome(ctx, obj, None, phase="cancelled"))
    except ProviderError as error:
        failed = Outcome("failed", errors=[{"code": error.code, "message": error.message}])
        await conclude(ctx, obj, failed)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.exception("could not start the sandbox of %s", obj["metadata"]["name"])
        error_code = "sandbox_start_failed"
        message = f"the sandbox could not be started: {_reason(error)}"[:2000]
        await conclude(
            ctx, obj, Outcome("failed", errors=[{"code": error_code, "message": message}])
        )
    finally:
        ctx.runs.finished(obj["metadata"]["uid"])


def _reason(error: Exception) -> str:
    """What went wrong, without an API server answer's headers."""
    if isinstance(error, ApiException):
        try:
            return f"the cluster refused it ({error.status}): {json.loads(error.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"the cluster refused it ({error.status} {error.reason})"
    return f"{type(error).__name__}: {error}"


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
        await delete_children(ctx, namespace, body.metadata.name)
        return
    await finish_agent_run(ctx, interaction, dict(body))


async def sweep_expired(ctx: Context) -> None:
    """At start and every sweep interval: delete finished interactions older than the retention
    period, and sandbox objects whose run has ended or is gone."""
    while True:
        for sweep in (sweep_orphans, sweep_once):
            try:
                await sweep(ctx, dt.datetime.now(dt.UTC))
            except Exception:  # a failed sweep is retried at the next interval, never fatal
                log.exception("%s failed", sweep.__name__)
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)


async def sweep_orphans(ctx: Context, _now: dt.datetime) -> list[str]:
    """Delete the sandbox objects of runs that have ended or are gone (an operator that died
    between an ending and its clean-up leaves them)."""
    networking = client.NetworkingV1Api(ctx.kube.api)
    selector = SANDBOX_LABEL
    found: dict[tuple[str, str], str] = {}
    # The clean-up deletes a run's NetworkPolicy last; its pod is listed too, for a pod that
    # outlived its policy. (No listing of Secrets: the operator may not read them all.)
    for list_all in (
        ctx.kube.core.list_pod_for_all_namespaces,
        networking.list_network_policy_for_all_namespaces,
    ):
        for item in (await list_all(label_selector=selector)).items:
            labels = item.metadata.labels or {}
            interaction = labels.get(INTERACTION_LABEL)
            if interaction:
                found[(item.metadata.namespace, item.metadata.name)] = interaction
    deleted = []
    for (namespace, child), name in found.items():
        interaction = await ctx.kube.get("interactions", namespace, name)
        phase = ((interaction or {}).get("status") or {}).get("phase")
        if interaction is None or phase in TERMINAL_PHASES:
            await delete_children(ctx, namespace, child)
            deleted.append(f"{namespace}/{child}")
    if deleted:
        log.info("deleted the sandbox objects of %d ended runs", len(deleted))
    return deleted


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
            await erase(
                ctx.kube, ctx.events, meta["namespace"], meta["name"], ctx.run_store, ctx.outputs
            )
            deleted.append(f"{meta['namespace']}/{meta['name']}")
    if deleted:
        log.info("retention: deleted %d finished interactions", len(deleted))
    return deleted


def _parse(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
