"""A Model's maxConcurrency: a fair line in the real Redis, across every replica (what a client
sees of it, per vendor: test_vendors.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from tether.store import model_slots
from tether.store.model_slots import ModelSlots


@pytest.fixture
async def slots(stack):
    redis = Redis.from_url(stack.redis_url)
    yield ModelSlots(redis)
    await redis.aclose()


async def test_no_more_than_the_cap_are_in_flight_and_they_start_in_line(slots, request):
    key = request.node.name
    inside, most, order = 0, 0, []

    async def call(n: int) -> None:
        nonlocal inside, most
        await asyncio.sleep(0.02 * n)  # arrive in turn
        async with slots.hold(key, 2):
            order.append(n)
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.15)
            inside -= 1

    await asyncio.gather(*(call(n) for n in range(6)))
    assert most == 2
    assert order == list(range(6))


async def test_a_holder_that_died_frees_its_slot_within_its_lease(slots, request, monkeypatch):
    monkeypatch.setattr(model_slots, "LEASE_SECONDS", 1)
    key = request.node.name
    keys = [f"tether:slots:{key}:{part}" for part in ("holders", "line", "seen", "tickets")]
    # a process took the one slot and died without a word
    assert await slots.redis.eval(model_slots._TRY, 4, *keys, "dead", 1, 1, 10) == 1
    started = time.monotonic()
    async with slots.hold(key, 1):
        waited = time.monotonic() - started
    assert 0.5 < waited < 5


async def test_a_waiter_that_gives_up_leaves_the_line_at_once(slots, request):
    key = request.node.name
    release = asyncio.Event()

    async def holder() -> None:
        async with slots.hold(key, 1):
            await release.wait()

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.1)
    quitter = asyncio.create_task(slots.hold(key, 1).__aenter__())
    await asyncio.sleep(0.1)
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    release.set()
    await holding
    async with asyncio.timeout(2):  # not the 10 s a silent waiter would keep its place
        async with slots.hold(key, 1):
            pass
