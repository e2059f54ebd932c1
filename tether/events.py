"""The event log: one Redis Stream per interaction, the source of SSE and of stream resume.

Token deltas live here and never in etcd. Stream entry ids are the SSE `event_id`s: monotonic per
interaction, and valid across gateway restarts and replicas because Redis assigns them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

TERMINAL_EVENT = "interaction.completed"
_EVENT_ID = re.compile(r"^\d+-\d+$")


class InvalidEventId(ValueError):
    """A resume id that is not an event id this log ever issued."""


def stream_key(namespace: str, name: str) -> str:
    return f"tether:events:{namespace}/{name}"


def check_event_id(event_id: str) -> str:
    if not _EVENT_ID.match(event_id):
        raise InvalidEventId(
            f"last_event_id {event_id!r} is not an event id (like '1732500000000-0')"
        )
    return event_id


class EventLog:
    """Append and replay the SSE events of interactions."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    async def append(self, namespace: str, name: str, event: dict[str, Any]) -> str:
        """Add one event (without its event_id); returns the id Redis gave it."""
        event_id = await self.redis.xadd(stream_key(namespace, name), {"e": json.dumps(event)})
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    async def finish(self, namespace: str, name: str) -> None:
        """Keep the finished log for resume for a while, then let Redis drop it."""
        await self.redis.expire(stream_key(namespace, name), self.ttl_seconds)

    async def delete(self, namespace: str, name: str) -> None:
        await self.redis.delete(stream_key(namespace, name))

    async def exists(self, namespace: str, name: str) -> bool:
        return bool(await self.redis.exists(stream_key(namespace, name)))

    async def follow(
        self, namespace: str, name: str, after: str = "0", block_ms: int = 5000
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the events after `after`, waiting for new ones, until the terminal event."""
        key = stream_key(namespace, name)
        last = after
        while True:
            batch = await self.redis.xread({key: last}, count=256, block=block_ms)
            for _key, entries in batch:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    event = json.loads(fields[b"e"] if b"e" in fields else fields["e"])
                    event["event_id"] = last
                    yield event
                    if event.get("event_type") == TERMINAL_EVENT:
                        return


def _unstored_key(namespace: str, name: str) -> str:
    return f"tether:unstored:{namespace}/{name}"


async def mark_unstored(redis: Redis, namespace: str, name: str, ttl_seconds: int) -> None:
    """Remember that a store=false interaction existed, so continuing it gets a clear error."""
    await redis.set(_unstored_key(namespace, name), b"1", ex=ttl_seconds)


async def was_unstored(redis: Redis, namespace: str, name: str) -> bool:
    return bool(await redis.exists(_unstored_key(namespace, name)))
