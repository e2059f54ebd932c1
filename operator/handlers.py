"""kopf handlers: every Interaction event starts, cancels or ignores a run; nothing else. Every
replica sees every event; the one holding the run's lease (`tether.store.run_leases`) acts.

Only `on.event` handlers watch Interactions, so kopf stores no diff-base or progress
annotations on them: inputs of any size never meet the 256 KiB annotation limit, and kopf is
told not to build the diff base it would never read (`NoDiffBase`).
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
from tether.store.events import EventLog, LeaseLost
from tether.store.run_leases import Claim
from tether.tasks import stop

from . import environments, failover, leadership, metrics, sweeps, triggers, warm_pool, webhooks
from .agent_run import (
    agent_outcome,
    finish_agent_run,
    finish_if_sandbox_ended,
    observe_start,
    start_agent_run,
)
from .context import Context
from .ending import Outcome, conclude, delete_children, finish_announced, resume_ended
from .model_run import run_model_interaction
from .runs import RunCancelled
from .sandbox_pod import INTERACTION_LABEL, SANDBOX_LABEL

log = logging.getLogger("tether.operator")


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """The diff base of an object, as event handlers need it: none. kopf builds one for every
    event (a deep copy of the whole object, input and output included) to tell on.create and
    on.update handlers what changed; Tether registers neither."""

    def build(self, **_: Any) -> kopf.BodyEssence:
        return kopf.BodyEssence()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # no k8s Event per handler: fewer writes per interaction
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.request_timeout = 60
    config = Settings()
    redis = connection.connect(config)
    memo.ctx = ctx = Context(
        settings=config,
        kube=await Kube.connect(config, component="tether-operator"),
        events=EventLog(redis, config.event_ttl_seconds),
    )
    server, _thread = start_http_server(config.metrics_port, addr=config.host)
    log.info("metrics on http://%s:%d/metrics", config.host, server.server_port)
    memo.tasks = [
        asyncio.create_task(work)
        for work in (
            ctx.catalog.keep_current(),
            ctx.webhooks.keep_current(),
            failover.keep_renewing(ctx),
            failover.keep_adopting(ctx, lambda obj: _claim_and_act(ctx, obj)),
            leadership.keep_leading(ctx, lambda: _lead(ctx)),
            webhooks.keep_delivering(ctx),  # every replica: the deliveries are leased in Redis
        )
    ]


async def _lead(ctx: Context) -> None:
    """The leader's duties: what runs on a clock, once for all the replicas."""
    await asyncio.gather(
        sweeps.keep_sweeping(ctx),
        environments.keep_expiring(ctx),
        triggers.keep_firing(ctx),
        warm_pool.keep_filling(ctx),
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: Context = memo.ctx
    await asyncio.gather(*(stop(task) for task in memo.tasks))
    await ctx.runs.shutdown()
    await ctx.events.redis.aclose()
    await ctx.kube.close()


@kopf.on.event(GROUP, VERSION, "interactions")
async def interaction_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every replica sees every event; the one holding the run's lease acts on it."""
    ctx: Context = memo.ctx
    meta = body.metadata
    run = (meta.namespace, meta.name)
    if type == "DELETED" or meta.get("deletionTimestamp"):
        ctx.runs.forget(meta.uid)
        _closed(ctx, run)
        return
    obj = dict(body)
    if body.status.get("phase") in TERMINAL_PHASES:
        _closed(ctx, run)
        if type is None:  # seen at (re)start: finish an ending a crash interrupted
            await resume_ended(ctx, obj)
        return
    ctx.open.add(run)
    if ctx.leases.holds(*run):
        await _act(ctx, obj, None)
    elif type in (None, "ADDED"):  # no replica runs it yet: the first to claim it does
        await _claim_and_act(ctx, obj)
    # else another replica runs it; if that replica dies, `failover` adopts it


def _closed(ctx: Context, run: tuple[str, str]) -> None:
    ctx.open.discard(run)
    ctx.leases.drop(*run)


async def _claim_and_act(ctx: Context, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    claim = await through_outages(
        lambda: ctx.leases.claim(meta["uid"], namespace, name), f"lease of {namespace}/{name}"
    )
    if claim is not None:
        await _act(ctx, obj, claim)


async def _act(ctx: Context, obj: dict[str, Any], claim: Claim | None) -> None:
    """Start, cancel or finish the run this replica holds. `claim`: it was claimed just now, so
    an earlier holder (this replica before a restart, or one that died) may have begun it."""
    meta, status = obj["metadata"], obj.get("status") or {}
    uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
    try:
        if claim is not None and claim.ended is not None:
            await finish_announced(ctx, obj, claim.ended)  # announced, then its holder stopped
            return
        is_agent = bool(obj["spec"].get("agent"))
        if CANCEL_ANNOTATION in (meta.get("annotations") or {}):
            if not ctx.runs.cancel(uid):  # not in flight here: end it now
                cancelled = (
                    await agent_outcome(ctx, obj, None, phase="cancelled")
                    if is_agent
                    else Outcome("cancelled")
                )
                await conclude(ctx, obj, cancelled)
        elif not is_agent:
            begun = claim is not None and claim.begun
            ctx.runs.start(uid, run_model_interaction(ctx, obj, begun=begun))
        elif REPORTED_ANNOTATION in (meta.get("annotations") or {}):
            await finish_agent_run(ctx, obj, None)  # it said how it ended; its pod is winding down
        elif status.get("sandboxPod"):
            if claim is not None:  # did its sandbox end while no replica was looking?
                await finish_if_sandbox_ended(ctx, obj)
        else:
            ctx.runs.start(uid, _start_once(ctx, obj))
    except LeaseLost:
        failover.given_up(ctx, namespace, name)


@kopf.on.event(GROUP, VERSION, "environments")
async def environment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """New, or seen at (re)start: give it its volume. A run's start makes sure of it too."""
    if type in (None, "ADDED"):
        await environments.environment_seen(memo.ctx, dict(body))


async def _start_once(ctx: Context, obj: dict[str, Any]) -> None:
    """Start an agent run; a stale event for it never starts it again in this process, and a
    start that breaks ends the run with the reason instead of leaving it queued in silence."""
    meta = obj["metadata"]
    try:
        try:
            await ctx.runs.interruptible(meta["uid"], start_agent_run(ctx, obj))
        except RunCancelled:
            await conclude(ctx, obj, await agent_outcome(ctx, obj, None, phase="cancelled"))
        except RunError as error:
            await conclude(ctx, obj, Outcome("failed", errors=[error.as_error()]))
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Exception as error:
            log.exception("could not start the sandbox of %s", meta["name"])
            error_code = "sandbox_start_failed"
            message = f"the sandbox could not be started: {_reason(error)}"[:2000]
            await conclude(
                ctx, obj, Outcome("failed", errors=[{"code": error_code, "message": message}])
            )
    except LeaseLost:  # this replica may adopt it again later
        failover.given_up(ctx, meta["namespace"], meta["name"])
        return
    ctx.runs.finished(meta["uid"])


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
    name = interaction["metadata"]["name"]
    if ctx.leases.holds(namespace, name):  # else its replica does
        try:
            await finish_agent_run(ctx, interaction, dict(body) if ended else None)
        except LeaseLost:
            failover.given_up(ctx, namespace, name)
