"""Output steps too large for an Interaction's status live here, beside the record.

An Interaction must fit one etcd object, so its status keeps the output timeline only while it
is small; a larger one is kept whole in Redis (which keeps its data on disk) for as long as the
interaction is retained, and the status names it by a reference. Each write gets a fresh
reference, so an ending that lost the race to another can never overwrite the winner's steps.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis.asyncio import Redis

STATUS_STEPS_LIMIT = 256 * 1024
"""Serialized output steps up to this many bytes stay in the status."""


def _key(namespace: str, name: str) -> str:
    return f"tether:outputs:{namespace}/{name}"


def fits_status(steps: list[dict[str, Any]]) -> bool:
    return len(json.dumps(steps, separators=(",", ":"))) <= STATUS_STEPS_LIMIT


class Outputs:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    async def keep(self, namespace: str, name: str, steps: list[dict[str, Any]]) -> str:
        """Store the steps; returns the reference the status carries."""
        ref = secrets.token_hex(8)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(namespace, name), ref, json.dumps(steps))
            pipe.expire(_key(namespace, name), self.ttl_seconds)
            await pipe.execute()
        return ref

    async def load(self, namespace: str, name: str, ref: str) -> list[dict[str, Any]] | None:
        raw = await self.redis.hget(_key(namespace, name), ref)
        return json.loads(raw) if raw is not None else None

    async def delete(self, namespace: str, name: str) -> None:
        await self.redis.delete(_key(namespace, name))
