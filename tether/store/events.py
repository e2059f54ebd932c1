"""The event log: one Redis Stream per interaction, the source of SSE and of stream resume.

Token deltas live here and never in etcd. Stream entry ids are the SSE `event_id`s: monotonic per
interaction, and valid across gateway restarts and replicas because Redis assigns them.

The end of an interaction is written once: the completion events go in with an "ended" marker,
atomically (a Lua script), so a repeated announcement after a crash adds nothing, and nothing is
appended after the end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from tether.store.connection import BLOCK_MS
from tether.store.webhook_queue import DUE, job_key

TERMINAL_EVENT = "interaction.completed"
DELETED = "interaction_deleted"
"""The code of the `error` event that ends the stream of an interaction deleted while running."""
_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_MAX_ID_PART = 2**64 - 1

# KEYS: stream, ended marker. ARGV: event. Nothing is appended once the end was announced.
_APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
return redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
"""
# KEYS: stream, ended marker, webhook due set, then one key per webhook job. ARGV: ttl, now,
# the number of jobs n, n job ids, n jobs, then the events. Returns 1 if this call announced
# the end.
_END = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local n = tonumber(ARGV[3])
for i = 1, n do
  redis.call('SET', KEYS[3 + i], ARGV[3 + n + i])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3 + i])
end
for i = 4 + 2 * n, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


class InvalidEventId(ValueError):
    """A resume id that is not an event id this log ever issued."""


def stream_key(namespace: str, name: str) -> str:
    return f"tether:events:{namespace}/{name}"


def _ended_key(namespace: str, name: str) -> str:
    return f"tether:ended:{namespace}/{name}"


def check_event_id(event_id: str) -> str:
    found = _EVENT_ID.match(event_id)
    if not found or any(int(part) > _MAX_ID_PART for part in found.groups()):
        raise InvalidEventId(
            f"last_event_id {event_id!r} is not an event id (like '1732500000000-0')"
        )
    return event_id


def is_end(event: dict[str, Any]) -> bool:
    """The last event of a stream: the completion, or the error of a deletion."""
    return event.get("event_type") == TERMINAL_EVENT or (
        event.get("event_type") == "error" and (event.get("error") or {}).get("code") == DELETED
    )


class EventLog:
    """Append and replay the SSE events of interactions."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self._append = redis.register_script(_APPEND)
        self._end = redis.register_script(_END)

    async def append(self, namespace: str, name: str, event: dict[str, Any]) -> str | None:
        """Add one event (without its event_id); returns the id Redis gave it, or None if the
        interaction has already ended (its log takes nothing more)."""
        keys = [stream_key(namespace, name), _ended_key(namespace, name)]
        event_id = await self._append(keys=keys, args=[json.dumps(event)])
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def emitter(self, namespace: str, name: str) -> Callable[..., Awaitable[None]]:
        """`emit(event_type, **fields)` for one interaction's log."""

        async def emit(event_type: str, **fields: Any) -> None:
            await self.append(namespace, name, {"event_type": event_type, **fields})

        return emit

    async def end(
        self,
        namespace: str,
        name: str,
        events: list[dict[str, Any]],
        webhooks: list[dict[str, Any]] = (),
    ) -> bool:
        """Append the closing events, once: True if this call wrote them, False if the end was
        already announced. The log is kept for resume for a while, then Redis drops it. The
        `webhooks` jobs go into the outbox with them, so they are sent for this end only once."""
        keys = [
            stream_key(namespace, name),
            _ended_key(namespace, name),
            DUE,
            *(job_key(job["id"]) for job in webhooks),
        ]
        args = [
            self.ttl_seconds,
            time.time(),
            len(webhooks),
            *(job["id"] for job in webhooks),
            *(json.dumps(job) for job in webhooks),
            *(json.dumps(e) for e in events),
        ]
        return bool(await self._end(keys=keys, args=args))

    async def has_ended(self, namespace: str, name: str) -> bool:
        return bool(await self.redis.exists(_ended_key(namespace, name)))

    async def delete(self, namespace: str, name: str) -> None:
        """The interaction is gone: a follower still reading learns so, then the log goes."""
        message = "the interaction was deleted"
        if await self.end(
            namespace,
            name,
            [{"event_type": "error", "error": {"code": DELETED, "message": message}}],
        ):
            # Followers blocked on the stream wake up on the event above; give them a moment.
            await self.redis.expire(stream_key(namespace, name), 60)
        else:
            await self.redis.delete(stream_key(namespace, name))

    async def exists(self, namespace: str, name: str) -> bool:
        return bool(await self.redis.exists(stream_key(namespace, name)))

    async def follow(
        self, namespace: str, name: str, after: str = "0", block_ms: int = BLOCK_MS
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the events after `after`, waiting for new ones, until the last one."""
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
                    if is_end(event):
                        return


def _unstored_key(namespace: str, name: str) -> str:
    return f"tether:unstored:{namespace}/{name}"


async def mark_unstored(redis: Redis, namespace: str, name: str, ttl_seconds: int) -> None:
    """Remember that a store=false interaction existed, so continuing it gets a clear error."""
    await redis.set(_unstored_key(namespace, name), b"1", ex=ttl_seconds)


async def was_unstored(redis: Redis, namespace: str, name: str) -> bool:
    return bool(await redis.exists(_unstored_key(namespace, name)))
