"""kopf handlers: every Interaction event starts, cancels or ignores a run; nothing else.

Only `on.event` handlers watch Interactions, so kopf stores no diff-base or progress
annotations on them: inputs of any size never meet the 256 KiB annotation limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import start_http_server

from tether.api import GROUP, VERSION
from tether.api.interaction import CANCEL_ANNOTATION, REPORTED_ANNOTATION, TERMINAL_PHASES
from tether.errors import RunError
from tether.kube import Kube, refusal
from tether.outages import through_outages
from tether.settings import Settings
from tether.store import connection
from tether.store.events import EventLog

from . import environments, metrics, sweeps, triggers, webhooks
from .agent_run import agent_outcome, finish_agent_run, observe_start, start_agent_run
from .context import Context
from .ending import Outcome, conclude, delete_children, finish_announced, resume_ended
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
    redis = connection.connect(config)
    memo.ctx = Context(
        settings=config,
        kube=await Kube.connect(config, component="tether-operator"),
        events=EventLog(redis, config.event_ttl_seconds),
    )
    server, _thread = start_http_server(config.metrics_port, addr=config.host)
    log.info("metrics on http://%s:%d/metrics", config.host, server.server_port)
    memo.catalog = asyncio.create_task(memo.ctx.catalog.keep_current())
    memo.sweeper = asyncio.create_task(sweeps.keep_sweeping(memo.ctx))
    memo.expirer = asyncio.create_task(environments.keep_expiring(memo.ctx))
    memo.deliverer = asyncio.create_task(webhooks.keep_delivering(memo.ctx))
    memo.scheduler = asyncio.create_task(triggers.keep_firing(memo.ctx))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.ctx
    memo.catalog.cancel()
    memo.sweeper.cancel()
    memo.expirer.cancel()
    memo.deliverer.cancel()
    memo.scheduler.cancel()
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
    if type is None:  # an ending announced, and then the operator stopped before writing it?
        namespace, name = body.metadata.namespace, body.metadata.name
        announced = await through_outages(
            lambda: ctx.events.ended_status(namespace, name), f"ending of {namespace}/{name}"
        )
        if announced is not None:
            await finish_announced(ctx, obj, announced)
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
        ctx.runs.start(uid, run_model_interaction(ctx, obj, resumed=type is None))
    elif REPORTED_ANNOTATION in body.metadata.annotations:
        await finish_agent_run(ctx, obj, None)  # it said how it ended; its pod is winding down
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


@kopf.on.event(GROUP, VERSION, "environments")
async def environment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """New, or seen at (re)start: give it its volume. A run's start makes sure of it too."""
    if type in (None, "ADDED"):
        await environments.environment_seen(memo.ctx, dict(body))


async def _start_once(ctx: Context, obj: dict[str, Any]) -> None:
    """Start an agent run; a stale event for it never starts it again in this process, and a
    start that breaks ends the run with the reason instead of leaving it queued in silence."""
    try:
        await ctx.runs.interruptible(obj["metadata"]["uid"], start_agent_run(ctx, obj))
    except RunCancelled:
        await conclude(ctx, obj, await agent_outcome(ctx, obj, None, phase="cancelled"))
    except RunError as error:
        await conclude(ctx, obj, Outcome("failed", errors=[error.as_error()]))
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
        return f"the cluster refused it ({error.status}): {refusal(error)}"
    return f"{type(error).__name__}: {error}"


@kopf.on.event("", "v1", "pods", labels={SANDBOX_LABEL: kopf.PRESENT})
async def sandbox_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A sandbox pod ended, or was deleted under a running run: finish its agent run from
    what the run reported."""
    ctx: Context = memo.ctx
    uid = body.metadata.uid
    phase = body.status.get("phase")
    if (
        type == "DELETED"
        or body.metadata.get("deletionTimestamp")
        or phase in ("Succeeded", "Failed")
    ):
        ctx.active_sandboxes.pop(uid, None)
    else:
        running = phase == "Running"
        if running and not ctx.active_sandboxes.get(uid):  # the first time it is seen running
            observe_start(dict(body))
        ctx.active_sandboxes[uid] = running or ctx.active_sandboxes.get(uid, False)
    metrics.ACTIVE_SANDBOXES.set(len(ctx.active_sandboxes))
    ended = phase in ("Succeeded", "Failed")
    if not ended and type != "DELETED":
        return
    namespace = body.metadata.namespace
    interaction = await ctx.kube.get(
        "interactions", namespace, body.metadata.labels[INTERACTION_LABEL]
    )
    if interaction is None:
        return  # the garbage collector removes what a deleted interaction owned
    if (interaction.get("status") or {}).get("phase") in TERMINAL_PHASES:
        if type != "DELETED":
            await delete_children(ctx, namespace, body.metadata.name)
        return
    await finish_agent_run(ctx, interaction, dict(body) if ended else None)
