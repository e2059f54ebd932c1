"""What an agent run has produced so far, kept in Redis beside its event log: the output steps,
the tokens spent (the budget is counted here, server-side), the outcome, the workspace files."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tether.providers.base import Usage
from tether.store.leases import renewed

CALL_LEASE_SECONDS = 30
"""A model call holds its run's lease this long at a time, renewed while it lasts: a gateway
that dies mid-call frees the run within this long."""

# Delete or extend the lease only if this call still holds it (compare-and-act, atomically).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('expire', KEYS[1], ARGV[2]) end"
)


class CallInFlight(Exception):
    """Another model call of the same run has not finished."""


def _fields(usage: Usage) -> dict[str, int]:
    return dataclasses.asdict(usage)


def _key(namespace: str, name: str, part: str) -> str:
    return f"tether:run:{namespace}/{name}:{part}"


class RunStore:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    async def next_index(self, namespace: str, name: str) -> int:
        """The index the next output step will get (a run appends one step at a time)."""
        return await self.redis.llen(_key(namespace, name, "steps"))

    async def append_step(self, namespace: str, name: str, step: dict[str, Any]) -> int:
        return await self.redis.rpush(_key(namespace, name, "steps"), json.dumps(step)) - 1

    async def steps(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [
            json.loads(s) for s in await self.redis.lrange(_key(namespace, name, "steps"), 0, -1)
        ]

    @contextlib.asynccontextmanager
    async def model_call(self, namespace: str, name: str) -> AsyncIterator[None]:
        """Hold the run's one model-call lease: checking the budget, calling the model and
        counting its tokens happen for one call at a time, so parallel calls cannot all pass
        the budget check. Raises CallInFlight when another call holds it."""
        key = _key(namespace, name, "call")
        holder = secrets.token_hex(16)
        if not await self.redis.set(key, holder, nx=True, ex=CALL_LEASE_SECONDS):
            raise CallInFlight(f"a model call of {name!r} is already in flight")
        try:
            async with renewed(self.redis, _RENEW, key, holder, CALL_LEASE_SECONDS):
                yield
        finally:
            with contextlib.suppress(RedisError):  # unreleased, the lease still expires
                await self.redis.eval(_RELEASE, 1, key, holder)

    async def add_usage(
        self, namespace: str, name: str, usage: Usage, budget: int | None = None
    ) -> int:
        """Count a call's tokens, and remember the run's budget beside them for the end.
        Returns the tokens the run has spent so far."""
        key = _key(namespace, name, "usage")
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, value in _fields(usage).items():
                pipe.hincrby(key, field, value)
            if budget is not None:
                pipe.hset(key, "budget", budget)
            pipe.expire(key, self.ttl_seconds)
            await pipe.execute()
        return (await self.usage(namespace, name)).spent

    async def usage(self, namespace: str, name: str) -> Usage:
        found = await self.redis.hgetall(_key(namespace, name, "usage"))
        return Usage(**{field: int(found.get(field.encode(), 0)) for field in _fields(Usage(0, 0))})

    async def overspent(self, namespace: str, name: str) -> tuple[int, int] | None:
        """(tokens spent, budget) if the run spent more than its budget, else None. However
        the agent reported its end, such a run ended `budget_exceeded`."""
        found = await self.redis.hget(_key(namespace, name, "usage"), "budget")
        if found is None:
            return None
        spent, budget = (await self.usage(namespace, name)).spent, int(found)
        return (spent, budget) if spent > budget else None

    async def set_outcome(self, namespace: str, name: str, outcome: dict[str, Any]) -> None:
        await self.redis.set(
            _key(namespace, name, "outcome"), json.dumps(outcome), ex=self.ttl_seconds
        )

    async def outcome(self, namespace: str, name: str) -> dict[str, Any] | None:
        raw = await self.redis.get(_key(namespace, name, "outcome"))
        return json.loads(raw) if raw else None

    async def put_files(self, namespace: str, name: str, archive: bytes) -> None:
        """The workspace as a tar.gz, kept for the retention period after the pod is gone."""
        await self.redis.set(_key(namespace, name, "files"), archive, ex=self.ttl_seconds)

    async def files(self, namespace: str, name: str) -> bytes | None:
        return await self.redis.get(_key(namespace, name, "files"))

    async def keep(self, namespace: str, name: str) -> None:
        """Start the retention clock on everything the run left behind."""
        for part in ("steps", "usage", "outcome", "files"):
            await self.redis.expire(_key(namespace, name, part), self.ttl_seconds)

    async def delete(self, namespace: str, name: str) -> None:
        await self.redis.delete(
            *(_key(namespace, name, p) for p in ("steps", "usage", "outcome", "files"))
        )
