"""Webhook delivery: the operator works through the outbox (tether.store.webhook_queue). A
message is fanned out to the tenant's endpoints subscribed to its event, then each endpoint gets
it signed with its current secrets, until it answers 2xx. A failure is tried again after each of
`webhook_retry_delays`; when none succeeds the endpoint is disabled
(`disabled_due_to_failed_deliveries`), and so is one that answers 410 Gone at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tether import webhook_sender
from tether.api.interaction import WebhookConfig
from tether.api.trigger import TRIGGER_LABEL, execution_view
from tether.api.webhook import (
    INTERACTION_EVENTS,
    TRIGGER_EVENT,
    WebhookStatus,
    active,
    enabled,
    event_body,
    message_id,
    secret_name,
    signing,
    stored_secrets,
)
from tether.environment_claims import now
from tether.store.webhook_queue import WebhookQueue, message_job
from tether.tasks import stop

from .context import Context

log = logging.getLogger("tether.operator.webhooks")
LEASE_MARGIN_SECONDS = 10
"""A claimed delivery not finished within its request's timeout and this (its worker died) is
claimed again."""
POLL_SECONDS = 0.5


def ending_jobs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages an ended interaction announces: its end, to the tenant's webhooks or to
    the URIs its `webhook_config` names instead; and, for a trigger's execution, that it
    finished, to the tenant's webhooks."""
    meta, status = obj["metadata"], obj.get("status") or {}
    namespace, phase = meta["namespace"], status["phase"]
    moment = status.get("updated") or now()
    event = INTERACTION_EVENTS[phase]
    data: dict[str, Any] = {"id": meta["name"], "status": phase}
    for kind in ("agent", "model"):
        if name := obj["spec"].get(kind):
            data[kind] = name
    config = WebhookConfig.from_kube(obj["spec"].get("webhookConfig") or {})
    if config.user_metadata is not None:
        data["user_metadata"] = config.user_metadata
    job_id = message_id(namespace, meta["name"], meta["uid"], event)
    jobs = [message_job(job_id, namespace, event, event_body(event, moment, data), config.uris)]
    if trigger := (meta.get("labels") or {}).get(TRIGGER_LABEL):
        execution = execution_view(obj)
        finished = {
            "trigger_id": trigger,
            "execution_id": execution["id"],
            "interaction_id": meta["name"],
            "status": execution["status"],
        }
        job_id = message_id(namespace, meta["name"], meta["uid"], TRIGGER_EVENT)
        body = event_body(TRIGGER_EVENT, moment, finished)
        jobs.append(message_job(job_id, namespace, TRIGGER_EVENT, body))
    return jobs


async def tenant_webhooks(ctx: Context, namespace: str) -> list[dict[str, Any]]:
    """A tenant's Webhooks, from the watch; from the API server while the watch is broken."""
    return await ctx.webhooks.lookup(lambda reads: reads.items(namespace)) or []


async def signing_secrets(ctx: Context, namespace: str, webhook: str) -> list[str]:
    stored = await ctx.kube.secret_value(namespace, secret_name(webhook), "secrets")
    return signing(stored_secrets(stored), now())


async def disable(ctx: Context, namespace: str, webhook: str, reason: str) -> None:
    log.warning("disabling webhook %s/%s: %s", namespace, webhook, reason)
    status = WebhookStatus(state="disabled_due_to_failed_deliveries", reason=reason, disabled=now())
    try:
        await ctx.kube.patch_status("webhooks", namespace, webhook, status.to_kube())
    except ApiException as error:
        if error.status != 404:
            raise


class Deliveries:
    def __init__(self, ctx: Context, queue: WebhookQueue, sender: webhook_sender.Sender) -> None:
        self.ctx, self.queue, self.sender = ctx, queue, sender
        self.settings = ctx.settings

    async def handle(self, job: dict[str, Any]) -> None:
        target = job["target"]
        if target is None:
            await self.fan_out(job)
        elif "webhook" in target:
            await self.deliver(job, target["webhook"])
        else:
            await self.deliver_to_uri(job, target["uri"])

    async def fan_out(self, job: dict[str, Any]) -> None:
        if job["uris"]:
            await self.queue.fan_out(job, [{"uri": uri} for uri in job["uris"]])
            return
        targets = [
            {"webhook": w["metadata"]["name"]}
            for w in await tenant_webhooks(self.ctx, job["namespace"])
            if active(w, job["event"])
        ]
        await self.queue.fan_out(job, targets)

    async def deliver(self, job: dict[str, Any], webhook: str) -> None:
        namespace = job["namespace"]
        # Another replica may have fanned out from a watch a moment ahead of this one's.
        obj = await self.ctx.webhooks.lookup(lambda reads: reads.get(namespace, webhook))
        if obj is None or not active(obj, job["event"]):
            await self.queue.done(job)  # deleted, disabled or unsubscribed since: not sent
            return
        secrets_ = await signing_secrets(self.ctx, namespace, webhook)
        uri = obj["spec"]["uri"]
        attempt = await self.sender.send(uri, job["message"], job["body"], secrets_)
        number = job["attempt"] + 1
        await self.queue.record(
            namespace, webhook, attempt.logged(now(), job["message"], job["event"], number)
        )
        outcome = await self.after(job, attempt)
        if outcome == "gone":
            await disable(self.ctx, namespace, webhook, f"{uri} answered 410 Gone")
        elif outcome == "failed":
            reason = (
                f"{number} attempts to deliver {job['message']} failed; the last "
                f"{attempt.outcome()}"
            )
            await disable(self.ctx, namespace, webhook, reason)

    async def deliver_to_uri(self, job: dict[str, Any], uri: str) -> None:
        """A URI of the interaction's own `webhook_config`: signed with the secrets of the
        tenant's enabled webhooks, which is how its receivers tell the tenant's messages."""
        namespace = job["namespace"]
        secrets_ = [
            secret
            for w in await tenant_webhooks(self.ctx, namespace)
            if enabled(w)
            for secret in await signing_secrets(self.ctx, namespace, w["metadata"]["name"])
        ]
        attempt = await self.sender.send(uri, job["message"], job["body"], secrets_)
        if await self.after(job, attempt) == "failed":
            log.warning("gave up delivering %s to %s: %s", job["message"], uri, attempt.outcome())

    async def after(self, job: dict[str, Any], attempt: webhook_sender.Attempt) -> str:
        """What became of a job after an attempt: `delivered`, `gone` (410), `retrying` (put
        back for its next attempt), or `failed` (none left)."""
        delays = self.settings.webhook_retry_delays
        if attempt.delivered or attempt.status == 410:
            await self.queue.done(job)
            return "delivered" if attempt.delivered else "gone"
        if job["attempt"] < len(delays):
            retry = {**job, "attempt": job["attempt"] + 1}
            await self.queue.put(retry, time.time() + delays[job["attempt"]])
            return "retrying"
        await self.queue.done(job)
        return "failed"


async def keep_delivering(ctx: Context) -> None:
    """Claim due deliveries and send them, up to `webhook_concurrency` at a time."""
    queue = WebhookQueue(ctx.events.redis)
    settings = ctx.settings
    async with webhook_sender.Sender(settings) as sender:
        deliveries = Deliveries(ctx, queue, sender)
        running: set[asyncio.Task] = set()
        try:
            while True:
                free = settings.webhook_concurrency - len(running)
                jobs = []
                if free > 0:
                    try:
                        lease = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
                        jobs = await queue.claim(lease, free)
                    except Exception as error:  # Redis away: the jobs wait there
                        log.warning("cannot claim webhook deliveries: %s", error)
                for job in jobs:
                    task = asyncio.create_task(_handled(deliveries, job))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if not jobs:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            # Stopping: the deliveries under way stop before their client closes; their jobs
            # stay leased and come due again.
            await asyncio.gather(*(stop(task) for task in list(running)))


async def _handled(deliveries: Deliveries, job: dict[str, Any]) -> None:
    try:
        await deliveries.handle(job)
    except Exception:  # left leased: it comes due again when the lease runs out
        log.exception("webhook job %s failed; it is tried again later", job["id"])
