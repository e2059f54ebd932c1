"""The API server or Redis being away for a moment: how to tell, and how to wait it out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("tether")
T = TypeVar("T")


def unavailable(error: BaseException) -> bool:
    """The API server or Redis did not answer, or answered that it cannot now: worth trying
    again (and, before anything was created, a 503)."""
    if isinstance(error, ApiException):
        return error.status == 429 or error.status >= 500 or error.status == 0
    return isinstance(
        error,
        aiohttp.ClientError
        | asyncio.TimeoutError
        | ConnectionError
        | RedisConnectionError
        | RedisTimeoutError,
    )


async def through_outages(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()` until it gets through, backing off while `unavailable`; any other error
    is raised at once."""
    delay = 0.1
    while True:
        try:
            return await call()
        except Exception as error:
            if not unavailable(error):
                raise
            log.warning("%s: %s; trying again in %.1fs", what, error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3)


async def create_once(create: Callable[[], Awaitable[object]], what: str) -> None:
    """`create()` through outages; already there (409) is fine: an earlier try made it."""
    try:
        await through_outages(create, f"create {what}")
    except ApiException as error:
        if error.status != 409:
            raise
