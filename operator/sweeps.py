"""What the operator checks on a clock rather than on an event: runs whose sandbox went quiet,
objects a crash left behind, and interactions past their retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from kubernetes_asyncio import client

from tether.api import GROUP, VERSION
from tether.api.interaction import TERMINAL_PHASES
from tether.store.erase import erase

from .agent_run import finish_if_sandbox_ended
from .context import Context
from .ending import Outcome, conclude, delete_children, parse_timestamp
from .sandbox_pod import INTERACTION_LABEL, SANDBOX_LABEL

log = logging.getLogger("tether.operator")
DEADLINE_GRACE_SECONDS = 60
"""How long past its deadline a sandbox may stay unfinished before its run is ended anyway
(a pod never scheduled, or a node that stopped reporting)."""


async def keep_sweeping(ctx: Context) -> None:
    """At start and then on their intervals, forever; a failed sweep is retried, never fatal."""
    last_retention = None
    while True:
        now = dt.datetime.now(dt.UTC)
        sweeps = [check_sandboxes, sweep_orphans]
        if last_retention is None or (now - last_retention).total_seconds() >= (
            ctx.settings.sweep_interval_seconds
        ):
            sweeps.append(sweep_once)
            last_retention = now
        for sweep in sweeps:
            try:
                await sweep(ctx, now)
            except Exception:
                log.exception("%s failed", sweep.__name__)
        await asyncio.sleep(ctx.settings.sandbox_check_seconds)


async def check_sandboxes(ctx: Context, now: dt.datetime) -> list[str]:
    """End the agent runs whose sandbox has ended or vanished without the operator hearing of
    it, or that are past their deadline without their pod having ended it."""
    found = await ctx.kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "interactions", field_selector="status.phase=in_progress"
    )
    ended = []
    for item in found["items"]:
        meta, status = item["metadata"], item.get("status") or {}
        if not (item["spec"].get("agent") and status.get("sandboxPod")):
            continue
        pod = await finish_if_sandbox_ended(ctx, item)
        if pod is None:
            ended.append(meta["name"])
        elif _overdue(pod, now):
            message = "the sandbox did not finish by its deadline (it never started, or its node "
            message += "stopped reporting)"
            error = {"code": "deadline_exceeded", "message": message}
            await conclude(ctx, item, Outcome("incomplete", errors=[error]))
            ended.append(meta["name"])
    if ended:
        log.info("ended %d agent runs whose sandbox had gone quiet", len(ended))
    return ended


def _overdue(pod, now: dt.datetime) -> bool:
    deadline = pod.spec.active_deadline_seconds
    created = pod.metadata.creation_timestamp
    if not deadline or created is None:
        return False
    return (now - created).total_seconds() > deadline + DEADLINE_GRACE_SECONDS


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
        if status.get("phase") in TERMINAL_PHASES and updated and parse_timestamp(updated) < cutoff:
            meta = item["metadata"]
            await erase(
                ctx.kube, ctx.events, meta["namespace"], meta["name"], ctx.run_store, ctx.outputs
            )
            deleted.append(f"{meta['namespace']}/{meta['name']}")
    if deleted:
        log.info("retention: deleted %d finished interactions", len(deleted))
    return deleted
