"""One replica, the leader, does the work that runs on a clock rather than on an event: the
sweeps, idle Environments' expiry, the triggers' schedules and the warm pools' refills. The
leader holds a Kubernetes Lease (kubernetes_asyncio's leader election); when it stops renewing,
another replica takes the Lease within LEASE_SECONDS and the duties with it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from tether.tasks import stop

from .context import Context

log = logging.getLogger("tether.operator")
LEASE_NAME = "tether-operator-leader"
LEASE_SECONDS = 10
RENEW_DEADLINE_SECONDS = 7
RETRY_SECONDS = 2


async def keep_leading(ctx: Context, duties: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Forever: stand for leader; while leading, run `duties` (cancelled when the lead is lost)."""
    lock = LeaseLock(
        LEASE_NAME, ctx.settings.system_namespace, ctx.settings.operator_id, ctx.kube.api
    )

    leading: set[asyncio.Task] = set()

    async def lead() -> None:
        log.info("%s leads: sweeps, expiry, triggers, warm pools", ctx.settings.operator_id)
        leading.add(asyncio.current_task())
        await duties()

    async def stopped() -> None:
        log.info("%s is no longer the leader", ctx.settings.operator_id)

    config = Config(lock, LEASE_SECONDS, RENEW_DEADLINE_SECONDS, RETRY_SECONDS, lead, stopped)
    while True:
        try:
            await LeaderElection(config).run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API server away: stand again
            log.warning("leader election: %s", error)
        finally:  # the election stops the duties when the lead is lost, not when it breaks
            for task in leading:
                stop(task)
            leading.clear()
        await asyncio.sleep(RETRY_SECONDS)
