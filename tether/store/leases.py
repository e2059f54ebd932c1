"""Leases in Redis, renewed while their holder works: a process that dies lets go of its lease
within one lease's time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tether.tasks import stop


@contextlib.asynccontextmanager
async def renewed(
    redis: Redis, script: str, key: str, holder: str, seconds: float
) -> AsyncIterator[None]:
    """Run `script` (KEYS: key; ARGV: holder, seconds) every third of `seconds` while the block
    runs: the script extends the lease if `holder` still holds it."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(seconds / 3)
            with contextlib.suppress(RedisError):  # the next try, or the lease runs out
                await redis.eval(script, 1, key, holder, seconds)

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        await stop(renewing)
