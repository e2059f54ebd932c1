"""The event log: one Redis Stream per interaction, the source of SSE and of stream resume.

Token deltas live here and never in etcd. Stream entry ids are the SSE `event_id`s: monotonic per
interaction, and valid across gateway restarts and replicas because Redis assigns them.

A run writes through an `Emitter`: its events queue while a write is in flight and go in with the
next one, a batch per round trip, so a fast stream costs a few writes rather than one per token,
and a follower wakes once per batch.

The end of an interaction is written once: the completion events go in with an "ended" marker,
atomically (a Lua script), so a repeated announcement after a crash adds nothing, and nothing is
appended after the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tether.api.interaction import TERMINAL_PHASES
from tether.store.connection import BLOCK_MS
from tether.store.webhook_queue import DUE, job_key

TERMINAL_EVENT = "interaction.completed"
DELETED = "interaction_deleted"
"""The code of the `error` event that ends the stream of an interaction deleted while running."""
_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_MAX_ID_PART = 2**64 - 1

# A run's lease (`run_leases`): taken, or kept, by `holder` unless another holds it; false then.
TAKE_LEASE = """
local function take(lease, holder, ms)
  local now = redis.call('GET', lease)
  if now and now ~= holder then return false end
  redis.call('SET', lease, holder, 'PX', ms)
  return true
end
"""
# A fenced write first takes the run's lease (holder '' when unfenced): held by another replica,
# it writes nothing (-1); lapsed and taken by nobody (a Redis restart lost it), it takes it back.
_FENCE = (
    TAKE_LEASE
    + """
local function fenced(lease, holder, ms)
  return holder ~= '' and not take(lease, holder, ms)
end
"""
)
# KEYS: stream, ended marker, the run's lease (any key when unfenced). ARGV: the lease's holder
# ('' unfenced), lease ms, then the events. Nothing is appended once the end was announced.
# Returns the last event's id, false once ended, -1 for a lease another replica holds.
_APPEND = (
    _FENCE
    + """
if fenced(KEYS[3], ARGV[1], ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = false
for i = 3, #ARGV do id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
return id
"""
)
MAX_QUEUED = 512
"""Events an emitter holds before the run waits for its writes."""
# KEYS: stream, ended marker, webhook due set, the run's lease (any key when unfenced), then one
# key per webhook job. ARGV: ttl, now, the ending (the marker's value), the lease's holder (''
# unfenced), lease ms, the number of jobs n, n job ids, n jobs, then the events.
# Returns 1 if this call announced the end, 0 if it was announced before, -1 for a lease another
# replica holds.
_END = (
    _FENCE
    + """
if fenced(KEYS[4], ARGV[4], ARGV[5]) then return -1 end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[1]) then return 0 end
local n = tonumber(ARGV[6])
for i = 1, n do
  redis.call('SET', KEYS[4 + i], ARGV[6 + n + i])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[6 + i])
end
for i = 7 + 2 * n, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
)
LOST = -1


@dataclass(frozen=True)
class Fence:
    """A run's writes are fenced by its lease (`run_leases`): they land unless another replica
    holds it."""

    key: str
    holder: str
    lease_ms: int


def _lease_of(fence: Fence | None) -> str:
    return fence.key if fence else "tether:lease:-"  # never read: the holder is ''


def _holder_of(fence: Fence | None) -> tuple[str, int]:
    return (fence.holder, fence.lease_ms) if fence else ("", 0)


class LeaseLost(Exception):
    """This replica no longer holds the run: another one runs it now."""


class InvalidEventId(ValueError):
    """A resume id that is not an event id this log ever issued."""


def stream_key(namespace: str, name: str) -> str:
    return f"tether:events:{namespace}/{name}"


def ended_key(namespace: str, name: str) -> str:
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

    async def append(
        self,
        namespace: str,
        name: str,
        events: list[dict[str, Any]],
        fence: Fence | None = None,
    ) -> str | None:
        """Add events (without their event_ids), in one round trip; returns the id Redis gave
        the last, or None if the interaction has already ended (its log takes nothing more).
        Raises LeaseLost if `fence` no longer holds."""
        keys = [stream_key(namespace, name), ended_key(namespace, name), _lease_of(fence)]
        args = [*_holder_of(fence), *(json.dumps(e) for e in events)]
        event_id = await self._append(keys=keys, args=args)
        if event_id == LOST:
            raise LeaseLost(f"{namespace}/{name}")
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def emitter(self, namespace: str, name: str, fence: Fence | None = None) -> Emitter:
        return Emitter(self, namespace, name, fence)

    async def end(
        self,
        namespace: str,
        name: str,
        events: list[dict[str, Any]],
        webhooks: list[dict[str, Any]] = (),
        status: dict[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> bool:
        """Append the closing events, once: True if this call wrote them, False if the end was
        already announced. The log is kept for resume for a while, then Redis drops it. The
        `webhooks` jobs go into the outbox with them, so they are sent for this end only once.
        `status` is the ending's status as the interaction's resource will hold it: kept with
        the end, it is the ending until the resource says so itself (`as_announced`). Raises
        LeaseLost if `fence` no longer holds."""
        keys = [
            stream_key(namespace, name),
            ended_key(namespace, name),
            DUE,
            _lease_of(fence),
            *(job_key(job["id"]) for job in webhooks),
        ]
        args = [
            self.ttl_seconds,
            time.time(),
            json.dumps(status or {}),
            *_holder_of(fence),
            len(webhooks),
            *(job["id"] for job in webhooks),
            *(json.dumps(job) for job in webhooks),
            *(json.dumps(e) for e in events),
        ]
        announced = await self._end(keys=keys, args=args)
        if announced == LOST:
            raise LeaseLost(f"{namespace}/{name}")
        return bool(announced)

    async def has_ended(self, namespace: str, name: str) -> bool:
        return bool(await self.redis.exists(ended_key(namespace, name)))

    async def ended_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The status of the ending announced, if one was (a deletion has none)."""
        return ending_of(await self.redis.get(ended_key(namespace, name)))

    async def as_announced(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` as its log tells it, where its own status does not say so yet: ended once its
        ending is announced (the status is written just after), and in_progress once its run
        has begun streaming (a quick run's status is written once, at its end)."""
        status = obj.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            return obj
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(ended_key(namespace, name))
            pipe.exists(stream_key(namespace, name))
            kept, streaming = await pipe.execute()
        if ending := ending_of(kept):
            return {**obj, "status": {**status, **ending}}
        if streaming and not status.get("phase"):
            return {**obj, "status": {**status, "phase": "in_progress"}}
        return obj

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


def ending_of(kept: bytes | None) -> dict[str, Any] | None:
    """The status an "ended" marker keeps; None for a deletion's, or an older release's "1"."""
    try:
        status = json.loads(kept) if kept else None
    except ValueError:
        return None
    return status if isinstance(status, dict) and status.get("phase") else None


class Emitter:
    """`await emit(event_type, **fields)`: one interaction's events, written behind the run.

    `emit` queues the event and returns; one write at a time takes everything queued, in order,
    with the text deltas of one step joined (the same text in fewer events). `flush` waits until
    all are in and says whether the log took them (False once the interaction has ended). A
    write that fails fails the next `emit` or `flush`.
    """

    def __init__(
        self, log: EventLog, namespace: str, name: str, fence: Fence | None = None
    ) -> None:
        self.log = log
        self.namespace = namespace
        self.name = name
        self.fence = fence
        self._queued: list[dict[str, Any]] = []
        self._writing: asyncio.Task | None = None
        self._failed: BaseException | None = None
        self._refused = False

    async def __call__(self, event_type: str, **fields: Any) -> None:
        self._raise_failure()
        join_or_queue(self._queued, {"event_type": event_type, **fields})
        if self._writing is None:
            self._writing = asyncio.create_task(self._write())
        elif len(self._queued) >= MAX_QUEUED:
            await self.flush()

    async def flush(self) -> bool:
        if self._writing is not None:
            await asyncio.shield(self._writing)
        self._raise_failure()
        return not self._refused

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def _write(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                if await self.log.append(self.namespace, self.name, batch, self.fence) is None:
                    self._refused = True
        except Exception as error:
            self._failed = error
        finally:
            self._writing = None


def join_or_queue(queued: list[dict[str, Any]], event: dict[str, Any]) -> None:
    """Append `event`, or add its text to the last queued event when both are text deltas of the
    same kind on the same step."""
    last = queued[-1] if queued else None
    if (
        last is not None
        and event["event_type"] == last["event_type"] == "step.delta"
        and event.get("index") == last.get("index")
        and event["delta"].get("type") == last["delta"].get("type")
        and (more := _delta_text(event["delta"])) is not None
        and (so_far := _delta_text(last["delta"])) is not None
    ):
        last["delta"] = _with_text(last["delta"], so_far + more)
    else:
        queued.append(event)


def _delta_text(delta: dict[str, Any]) -> str | None:
    """The text a text or thought-summary delta carries; None for any other delta."""
    if delta.get("type") == "text":
        return delta.get("text")
    content = delta.get("content") or {}
    if delta.get("type") == "thought_summary" and content.get("type") == "text":
        return content.get("text")
    return None


def _with_text(delta: dict[str, Any], text: str) -> dict[str, Any]:
    if delta["type"] == "text":
        return {**delta, "text": text}
    return {**delta, "content": {**delta["content"], "text": text}}


def _unstored_key(namespace: str, name: str) -> str:
    return f"tether:unstored:{namespace}/{name}"


async def mark_unstored(redis: Redis, namespace: str, name: str, ttl_seconds: int) -> None:
    """Remember that a store=false interaction existed, so continuing it gets a clear error."""
    await redis.set(_unstored_key(namespace, name), b"1", ex=ttl_seconds)


async def was_unstored(redis: Redis, namespace: str, name: str) -> bool:
    return bool(await redis.exists(_unstored_key(namespace, name)))
