"""The one way the operator and the gateway connect to Redis.

Settings chosen for long-lived, blocking use: a socket timeout well above the event log's
`XREAD BLOCK` (redis-py's default of 5 s equals it, which cut quiet streams and slow synchronous
creates), a pool that waits for a free connection instead of raising when it is busy, and
retries with back-off through a Redis restart.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from tether.settings import Settings

BLOCK_MS = 5000
"""How long one `XREAD` waits for new events before the follower looks around again."""
SOCKET_TIMEOUT = BLOCK_MS / 1000 + 25


def connect(settings: Settings) -> Redis:
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=SOCKET_TIMEOUT,  # wait this long for a free connection, then fail
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2, base=0.05), retries=8),
        retry_on_error=[ConnectionError, TimeoutError, ConnectionResetError],
    )
    return Redis.from_pool(pool)  # owns the pool: closing the client closes it
