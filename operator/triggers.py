"""The trigger scheduler: every `trigger_check_seconds` the operator looks over the Triggers.
One that is due starts its execution for the first scheduled time it has not fired, so times
missed while the operator was away are fired, in order, once it is back (those older than
`trigger_catch_up_seconds` give way to the latest); and each only once, since an execution is
named by its time. An execution past `execution_timeout_seconds` is cancelled, and shows as
timed_out. After `max_consecutive_failures` failed executions in a row the trigger pauses
itself (status `error`) until an update sets it active again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tether import trigger_runs
from tether.api import GROUP, VERSION
from tether.api.interaction import CANCEL_ANNOTATION, TERMINAL_PHASES
from tether.api.trigger import (
    TIMED_OUT_ANNOTATION,
    TRIGGER_LABEL,
    TriggerSpec,
    TriggerStatus,
    consecutive_failures,
    due,
    next_time,
)
from tether.environment_claims import now

from .context import Context
from .ending import parse_timestamp

log = logging.getLogger("tether.operator.triggers")


async def keep_firing(ctx: Context) -> None:
    while True:
        try:
            listed = await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "triggers")
            for trigger in listed.get("items", []):
                try:
                    await look_over(ctx, trigger)
                except Exception:
                    meta = trigger["metadata"]
                    log.exception("trigger %s/%s", meta["namespace"], meta["name"])
        except Exception as error:  # the API server away: the next round catches up
            log.warning("cannot look over the triggers: %s", error)
        await asyncio.sleep(ctx.settings.trigger_check_seconds)


async def look_over(ctx: Context, trigger: dict[str, Any]) -> None:
    meta = trigger["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = TriggerSpec.from_kube(trigger["spec"])
    status = TriggerStatus.from_kube(trigger.get("status") or {})
    if spec.execution_timeout_seconds:  # every execution still running, not just the latest
        selector = f"{TRIGGER_LABEL}={name}"
        listed = await ctx.kube.list("interactions", namespace, label_selector=selector)
        for execution in listed.get("items", []):
            await time_out(ctx, execution, spec)
    if spec.status != "active" or status.errored:
        return
    moment = now()
    since = status.last_scheduled or meta["creationTimestamp"]
    scheduled = next_time(spec, since)
    if scheduled > moment:
        return
    late = (parse_timestamp(moment) - parse_timestamp(scheduled)).total_seconds()
    if late > ctx.settings.trigger_catch_up_seconds:  # away too long: only the latest time
        scheduled = due(spec, since, moment) or scheduled
    if spec.max_consecutive_failures:
        runs = await trigger_runs.executions(ctx.kube, namespace, name)
        if consecutive_failures(runs, status.last_resume_time) >= spec.max_consecutive_failures:
            log.warning("trigger %s/%s paused itself: its last executions failed", namespace, name)
            await _status(ctx, namespace, name, {"errored": moment})
            return
    update: dict[str, Any] = {"lastScheduled": scheduled, "lastRunTime": moment}
    try:
        update["previousInteractionId"] = await trigger_runs.start(ctx.kube, trigger, scheduled)
    except trigger_runs.NotStarted as error:
        log.warning("trigger %s/%s skipped %s: %s", namespace, name, scheduled, error)
    await _status(ctx, namespace, name, update)


async def time_out(ctx: Context, obj: dict[str, Any], spec: TriggerSpec) -> None:
    """Cancel an execution running past the trigger's timeout, marked as timed out."""
    if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return
    annotations = obj["metadata"].get("annotations") or {}
    if TIMED_OUT_ANNOTATION in annotations:
        return
    started = parse_timestamp(obj["metadata"]["creationTimestamp"])
    if (parse_timestamp(now()) - started).total_seconds() < spec.execution_timeout_seconds:
        return
    stamp = now()
    patch = {"metadata": {"annotations": {TIMED_OUT_ANNOTATION: stamp, CANCEL_ANNOTATION: stamp}}}
    meta = obj["metadata"]
    await ctx.kube.patch("interactions", meta["namespace"], meta["name"], patch)


async def _status(ctx: Context, namespace: str, name: str, status: dict[str, Any]) -> None:
    try:
        await ctx.kube.patch_status("triggers", namespace, name, status)
    except ApiException as error:
        if error.status != 404:  # deleted meanwhile
            raise
