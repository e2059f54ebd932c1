"""Environments: each active one has its workspace volume; one left unused past its idle
timeout loses the volume and says `expired`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tether import environment_claims
from tether.api import GROUP, VERSION
from tether.outages import through_outages

from .context import Context
from .ending import parse_timestamp
from .sandbox_pod import files_pod_name, volume_name, workspace_volume_claim

log = logging.getLogger("tether.operator")


async def environment_seen(ctx: Context, environment: dict[str, Any]) -> None:
    """A new (or, at start, every) Environment: active with its volume, unless expired."""
    meta = environment["metadata"]
    status = environment.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") == "expired":
        return
    claim = workspace_volume_claim(environment, ctx.settings.environment_storage)
    try:
        await through_outages(
            lambda: ctx.kube.core.create_namespaced_persistent_volume_claim(
                meta["namespace"], claim
            ),
            f"volume of environment {meta['name']}",
        )
    except ApiException as error:
        if error.status != 409:
            raise
    if status.get("phase") is None:
        fresh = {"phase": "active", "lastAccessed": meta["creationTimestamp"]}
        try:
            await ctx.kube.patch_status(
                "environments", meta["namespace"], meta["name"], fresh, meta["resourceVersion"]
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or a run claimed it first
                raise


def idle_for(environment: dict[str, Any], now: dt.datetime) -> float:
    status = environment.get("status") or {}
    last = status.get("lastAccessed") or environment["metadata"]["creationTimestamp"]
    return (now - parse_timestamp(last)).total_seconds()


async def expire_idle(ctx: Context, now: dt.datetime) -> list[str]:
    """Delete the volume of every environment unused past its idle timeout; the names."""
    found = await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "environments")
    expired = []
    for environment in found["items"]:
        status = environment.get("status") or {}
        timeout = (environment.get("spec") or {}).get("idleTimeoutSeconds") or (
            ctx.settings.environment_idle_seconds
        )
        if status.get("phase") == "expired" or idle_for(environment, now) < timeout:
            continue
        if await environment_claims.holder(ctx.kube, environment) is not None:
            continue  # a run is using it: its end counts as an access
        if await _expire(ctx, environment):
            expired.append(environment["metadata"]["name"])
    return expired


async def _expire(ctx: Context, environment: dict[str, Any]) -> bool:
    """Mark it expired (a compare-and-swap a run's claim cannot interleave with), then delete
    its volume. A crash between the two leaves the volume to the next sweep."""
    meta = environment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    mark = {
        "phase": "expired",
        "expired": environment_claims.now(),
        "activeInteraction": None,
        "claimed": None,
        "fileCount": 0,
        "sizeBytes": 0,
    }
    try:
        await ctx.kube.patch_status("environments", namespace, name, mark, meta["resourceVersion"])
    except ApiException as error:
        if error.status in (404, 409):  # gone, or just claimed by a run
            return False
        raise
    await delete_volume(ctx, namespace, name)
    log.info("environment %s/%s expired after going unused", namespace, name)
    return True


async def delete_volume(ctx: Context, namespace: str, name: str) -> None:
    """The environment's files pod first (while it runs, the volume it mounts cannot go), then
    its volume; either gone already is fine."""
    core = ctx.kube.core
    for delete in (
        lambda: core.delete_namespaced_pod(files_pod_name(name), namespace),
        lambda: core.delete_namespaced_persistent_volume_claim(volume_name(name), namespace),
    ):
        try:
            await delete()
        except ApiException as error:
            if error.status != 404:
                raise


async def sweep_expired_volumes(ctx: Context) -> None:
    """The volumes of expired environments that a crash left behind."""
    found = await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "environments")
    for environment in found["items"]:
        if (environment.get("status") or {}).get("phase") == "expired":
            meta = environment["metadata"]
            await delete_volume(ctx, meta["namespace"], meta["name"])


async def keep_expiring(ctx: Context) -> None:
    """Forever, every environment_check_seconds; a failed pass is retried, never fatal."""
    first = True
    while True:
        try:
            if first:
                await sweep_expired_volumes(ctx)
                first = False
            await expire_idle(ctx, dt.datetime.now(dt.UTC))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the environment expiry pass failed")
        await asyncio.sleep(ctx.settings.environment_check_seconds)
