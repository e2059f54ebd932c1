"""The webhook outbox: deliveries waiting for their next attempt, kept in Redis (append-only
file on), so that no restart of the operator or the gateway loses one.

A job is one message for one endpoint, or, before it is fanned out, one message for whoever is
subscribed. It is put in with the interaction's ending, atomically (`EventLog.end`), so an
ending announces its webhook exactly once. Jobs wait in a sorted set by when they are due. A
worker claims due jobs by pushing them a lease into the future, in one script: two workers
never hold the same job, and a job whose worker died comes due again when its lease runs out.
That is at-least-once delivery, with the same `webhook-id` every time.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from redis.asyncio import Redis

DUE = "tether:webhooks:due"
LOG_LENGTH = 50
"""Attempts kept per endpoint for its delivery log."""

# KEYS: due. ARGV: now, lease until, count. Returns the claimed job ids.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


def job_key(job_id: str) -> str:
    return f"tether:webhooks:job:{job_id}"


def _log_key(namespace: str, webhook: str) -> str:
    return f"tether:webhooks:log:{namespace}/{webhook}"


def message_job(
    job_id: str, namespace: str, event: str, body: dict[str, Any], uris: list[str] | None = None
) -> dict[str, Any]:
    """A message for the namespace's subscribed endpoints (or for `uris` alone); fanned out, it
    becomes one job per `target`: `{"webhook": id}` or `{"uri": uri}`."""
    return {
        "id": job_id,
        "message": job_id,
        "namespace": namespace,
        "event": event,
        "body": body,
        "uris": uris,
        "target": None,
        "attempt": 0,
    }


def _target_id(message: str, target: dict[str, str]) -> str:
    if "webhook" in target:
        return f"{message}:{target['webhook']}"
    return f"{message}:uri-{hashlib.sha256(target['uri'].encode()).hexdigest()[:16]}"


class WebhookQueue:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, lease_seconds: float, count: int) -> list[dict[str, Any]]:
        """Up to `count` due jobs, each leased to the caller for `lease_seconds`."""
        now = time.time()
        ids = [
            i.decode() if isinstance(i, bytes) else i
            for i in await self._claim(keys=[DUE], args=[now, now + lease_seconds, count])
        ]
        if not ids:
            return []
        found = await self.redis.mget([job_key(i) for i in ids])
        jobs = []
        for job_id, raw in zip(ids, found, strict=True):
            if raw is None:  # done by a worker whose lease had run out
                await self.redis.zrem(DUE, job_id)
            else:
                jobs.append(json.loads(raw))
        return jobs

    async def put(self, job: dict[str, Any], due: float | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(job_key(job["id"]), json.dumps(job))
            pipe.zadd(DUE, {job["id"]: time.time() if due is None else due})
            await pipe.execute()

    async def fan_out(self, job: dict[str, Any], targets: list[dict[str, str]]) -> None:
        """Replace a message job by one job per endpoint, at once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for target in targets:
                one = {**job, "id": _target_id(job["message"], target), "target": target}
                pipe.set(job_key(one["id"]), json.dumps(one))
                pipe.zadd(DUE, {one["id"]: time.time()})
            pipe.delete(job_key(job["id"]))
            pipe.zrem(DUE, job["id"])
            await pipe.execute()

    async def done(self, job: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(job_key(job["id"]))
            pipe.zrem(DUE, job["id"])
            await pipe.execute()

    async def record(self, namespace: str, webhook: str, attempt: dict[str, Any]) -> None:
        """One attempt in the endpoint's delivery log (newest first, the last LOG_LENGTH)."""
        key = _log_key(namespace, webhook)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, json.dumps(attempt))
            pipe.ltrim(key, 0, LOG_LENGTH - 1)
            await pipe.execute()

    async def recent(self, namespace: str, webhook: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in await self.redis.lrange(_log_key(namespace, webhook), 0, -1)]

    async def forget(self, namespace: str, webhook: str) -> None:
        await self.redis.delete(_log_key(namespace, webhook))
