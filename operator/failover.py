"""Runs move between operator replicas: this replica's leases renewed, the runs it lost dropped,
and the runs nobody holds any more (their replica died) adopted. See `tether.store.run_leases`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tether.api.interaction import TERMINAL_PHASES
from tether.store.run_leases import RENEW_SECONDS, SCAN_SECONDS

from .context import Context

log = logging.getLogger("tether.operator")


async def keep_renewing(ctx: Context) -> None:
    """Renew this replica's leases; a run another replica holds now stops here, unended."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            lost = await ctx.leases.renew()
        except Exception as error:  # Redis away: a lease that lapses meanwhile is taken back
            log.warning("cannot renew the run leases: %s", error)
            continue
        for (namespace, name), uid in lost:
            given_up(ctx, namespace, name)
            ctx.runs.forget(uid)


def given_up(ctx: Context, namespace: str, name: str) -> None:
    """Another replica holds the run now: it stops here, unended, and ends where it runs."""
    log.warning("%s/%s is run by another replica now: stopped here", namespace, name)
    ctx.leases.drop(namespace, name)


async def keep_adopting(ctx: Context, adopt: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Every SCAN_SECONDS, hand `adopt` each open interaction whose lease nobody holds."""
    while True:
        await asyncio.sleep(SCAN_SECONDS)
        try:
            others = [run for run in ctx.open if not ctx.leases.holds(*run)]
            for namespace, name in await ctx.leases.vacant(others):
                obj = await ctx.kube.get("interactions", namespace, name)
                if obj is None or (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
                    ctx.open.discard((namespace, name))
                    continue
                log.info("adopting %s/%s: no replica holds it", namespace, name)
                await adopt(obj)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API server or Redis away: the next round tries again
            log.warning("cannot look for runs without a replica: %s", error)
