"""Run leases on a real Redis: one replica holds a run, its writes are fenced by the lease, and
another replica takes the run only once the lease has lapsed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tether.store.events import EventLog, LeaseLost, stream_key
from tether.store.run_leases import Claim, RunLeases, lease_key

LEASE = 0.5
NAMESPACE = "tenant-a"


@pytest.fixture
async def redis(stack):
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def delta(text: str) -> dict:
    return {"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": text}}


async def test_a_run_is_held_by_one_replica_and_fenced_when_another_takes_it(redis):
    name = f"leased-{uuid.uuid4().hex[:8]}"
    run = (NAMESPACE, name)
    a = RunLeases(redis, "replica-a", lease_seconds=LEASE)
    b = RunLeases(redis, "replica-b", lease_seconds=LEASE)
    log = EventLog(redis, 600)

    assert await a.claim("uid-1", *run) == Claim(ended=None, begun=False)
    assert await b.claim("uid-1", *run) is None
    emit = log.emitter(*run, a.fence(*run))
    await emit("interaction.created", interaction={"id": name})
    await emit(**delta("from a"))
    assert await emit.flush()
    for _ in range(3):  # renewed past the lease's length: still a's
        await asyncio.sleep(LEASE / 2)
        assert await a.renew() == []
    assert await b.vacant([run]) == []
    assert await b.claim("uid-1", *run) is None

    await asyncio.sleep(LEASE * 1.5)  # a stops renewing (paused, or dead): the lease lapses
    assert await b.vacant([run]) == [run]
    assert await b.claim("uid-1", *run) == Claim(ended=None, begun=True)

    # a goes on: nothing it writes lands, and its renewal tells it the run is b's now
    await emit(**delta("late, from a"))
    with pytest.raises(LeaseLost):
        await emit.flush()
    ending = [{"event_type": "interaction.completed", "interaction": {"id": name}}]
    with pytest.raises(LeaseLost):
        await log.end(*run, ending, status={"phase": "failed"}, fence=a.fence(*run))
    assert await a.renew() == [(run, "uid-1")]
    assert not a.holds(*run) and a.fence(*run) is None

    assert await log.end(*run, ending, status={"phase": "completed"}, fence=b.fence(*run))
    texts = [
        entry[1][b"e"]
        for entry in await redis.xrange(stream_key(*run))
        if b"step.delta" in entry[1][b"e"]
    ]
    assert texts == [
        b'{"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": "from a"}}'
    ]

    b.drop(*run)  # ended: b stops renewing, and whoever claims it next learns it ended
    await asyncio.sleep(LEASE * 1.5)
    c = RunLeases(redis, "replica-c", lease_seconds=LEASE)
    assert await c.claim("uid-1", *run) == Claim(ended={"phase": "completed"}, begun=True)
    await redis.delete(stream_key(*run), f"tether:ended:{NAMESPACE}/{name}", lease_key(*run))


async def test_a_lease_lost_with_redis_and_taken_by_nobody_is_taken_back(redis):
    run = (NAMESPACE, f"leased-{uuid.uuid4().hex[:8]}")
    a = RunLeases(redis, "replica-a", lease_seconds=LEASE)
    b = RunLeases(redis, "replica-b", lease_seconds=LEASE)
    log = EventLog(redis, 600)
    assert await a.claim("uid-2", *run)
    await redis.delete(lease_key(*run))  # as a Redis restart that lost its last second does

    assert await log.append(*run, [delta("still a's")], a.fence(*run))  # taken back as it writes
    assert await b.claim("uid-2", *run) is None
    await redis.delete(lease_key(*run))
    assert await a.renew() == []  # or as it renews
    assert await b.claim("uid-2", *run) is None
    assert await redis.get(lease_key(*run)) == b"replica-a"
    await redis.delete(stream_key(*run), lease_key(*run))


async def test_a_restarted_replica_takes_its_own_runs_back_at_once(redis):
    run = (NAMESPACE, f"leased-{uuid.uuid4().hex[:8]}")
    before = RunLeases(redis, "replica-a", lease_seconds=60)
    assert await before.claim("uid-3", *run)
    after = RunLeases(redis, "replica-a", lease_seconds=60)  # the same pod, its process restarted
    assert await after.claim("uid-3", *run) == Claim(ended=None, begun=False)
    assert await RunLeases(redis, "replica-b").claim("uid-3", *run) is None
    await redis.delete(lease_key(*run))
