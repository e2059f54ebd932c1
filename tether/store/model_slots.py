"""A Model's cap on calls in flight, across every operator and gateway replica: a fair
semaphore in Redis. Callers over the cap wait in line and start in the order they came.

A holder keeps a lease renewed while its call lasts, and a waiter keeps its place by asking
again; a process that dies mid-call or mid-wait frees its slot or its place within a lease.
Redis's clock is the only one read, so replicas' clocks never disagree about a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tether.catalog import ResolvedModel
from tether.outages import through_outages
from tether.store.leases import renewed

LEASE_SECONDS = 30
"""A slot is held this long at a time, renewed while the call lasts."""
WAITER_SECONDS = 10
"""A waiter that has not asked again for this long has gone: its place is given up."""
POLL_SECONDS = 0.05

# KEYS: holders (zset: holder → lease end), line (zset: waiter → ticket), seen (zset: waiter →
# alive until), ticket counter. ARGV: waiter, cap, lease seconds, waiter seconds.
_TRY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
if free > 0 and redis.call('ZRANK', KEYS[2], ARGV[1]) < free then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
return redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
"""
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
"""


class ModelSlots:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @contextlib.asynccontextmanager
    async def hold(self, key: str, cap: int | None) -> AsyncIterator[None]:
        """One of `cap` slots of `key` for as long as the block runs (at once when uncapped);
        waits in line for it, across all replicas."""
        if cap is None:
            yield
            return
        keys = [f"tether:slots:{key}:{part}" for part in ("holders", "line", "seen", "tickets")]
        me = secrets.token_hex(12)
        try:
            while not await through_outages(
                lambda: self.redis.eval(_TRY, 4, *keys, me, cap, LEASE_SECONDS, WAITER_SECONDS),
                "the model's slots",
            ):
                await asyncio.sleep(POLL_SECONDS)
            async with renewed(self.redis, _RENEW, keys[0], me, LEASE_SECONDS):
                yield
        finally:  # a cancelled waiter gives up its place; a holder, its slot
            with contextlib.suppress(RedisError):
                await asyncio.shield(self.redis.eval(_LEAVE, 3, *keys[:3], me))

    def for_model(self, model: ResolvedModel) -> contextlib.AbstractAsyncContextManager[None]:
        """A slot of a Model with a maxConcurrency; no wait for one without."""
        return self.hold(f"{model.namespace}/{model.name}", model.spec.max_concurrency)
