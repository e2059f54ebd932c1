"""Stopping a task: a cancel lost on the way (Python 3.11's `asyncio.wait_for`) is sent again."""

from __future__ import annotations

import asyncio

from tether.tasks import stop


async def waits_in_line() -> None:
    while True:  # as a Model's line does: ask Redis (redis-py sends through `wait_for`), wait
        await asyncio.wait_for(asyncio.sleep(0), timeout=5)
        await asyncio.sleep(0.01)


async def test_wait_for_on_this_python_can_lose_a_cancel_and_stop_still_stops_the_task():
    lost = 0
    for ticks in range(8):  # the cancel lands at each moment of the loop in turn
        once, stopped = asyncio.create_task(waits_in_line()), asyncio.create_task(waits_in_line())
        for _ in range(ticks):
            await asyncio.sleep(0)
        once.cancel()
        stopper = stop(stopped)
        await asyncio.wait([once], timeout=0.5)
        lost += not once.done()
        async with asyncio.timeout(2):
            await stop(once)
            await stopper
        assert stopped.cancelled()
    assert lost > 0  # what makes `stop` needed, here
