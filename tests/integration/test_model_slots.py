"""A Model's maxConcurrency: a fair line in the real Redis, across every replica (what a client
sees of it, per vendor: test_vendors.py)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from redis.asyncio import Redis

from tether.operator.runs import RunCancelled, Runs
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


async def test_a_run_cancelled_while_it_waits_in_line_never_takes_a_turn(slots, request):
    """The cancel lands at any moment of the wait, often while a Redis command is on its way
    (where Python 3.11 can lose it, tether/tasks.py): every run ends cancelled, none gets in."""
    key = request.node.name
    release, got_in, cancelled = asyncio.Event(), [], 0

    async def holder() -> None:
        async with slots.hold(key, 1):
            await release.wait()

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.1)
    for n in range(150):
        runs, uid, ended = Runs(), f"run-{n}", asyncio.Event()

        async def waits_in_line(uid: str = uid) -> None:
            async with slots.hold(key, 1):
                got_in.append(uid)

        async def run(uid: str = uid, runs: Runs = runs, ended: asyncio.Event = ended) -> None:
            nonlocal cancelled
            try:
                await runs.interruptible(uid, waits_in_line())
            except RunCancelled:
                cancelled += 1
            finally:
                ended.set()

        runs.start(uid, run())
        await asyncio.sleep(random.uniform(0, 0.06))
        assert runs.cancel(uid)
        async with asyncio.timeout(2):
            await ended.wait()
    release.set()
    await holding
    assert (got_in, cancelled) == ([], 150)
