"""What an agent run has produced so far, kept in Redis beside its event log: the output steps,
the tokens spent (the budget is counted here, server-side), the outcome, the workspace files."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

FILES_LIMIT = 10 * 1024 * 1024


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

    async def add_usage(self, namespace: str, name: str, input_tokens: int, output_tokens: int):
        key = _key(namespace, name, "usage")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "input", input_tokens)
            pipe.hincrby(key, "output", output_tokens)
            pipe.expire(key, self.ttl_seconds)
            total_in, total_out, _ = await pipe.execute()
        return total_in, total_out

    async def usage(self, namespace: str, name: str) -> tuple[int, int]:
        found = await self.redis.hgetall(_key(namespace, name, "usage"))
        return int(found.get(b"input", 0)), int(found.get(b"output", 0))

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
