"""Stopping a task so that it stops.

On Python 3.11 one `Task.cancel()` can be lost: `asyncio.wait_for` returns the result of its
inner work instead of raising when the cancel lands just as that work completes (CPython
gh-86296, fixed in 3.12), and redis-py sends every command through `wait_for`. A task cancelled
while it talks to Redis would go on as if nothing had happened: a cancelled run waiting in a
Model's line took its turn and called the vendor. A task that must stop is cancelled again until
it has.
"""

from __future__ import annotations

import asyncio

AGAIN_SECONDS = 0.2
"""A cancel that has not ended the task in this long is sent again."""

_stopping: set[asyncio.Task] = set()


def stop(task: asyncio.Task) -> asyncio.Future[None]:
    """Cancel `task` now, and again until it ends. Await what this returns to wait for the end
    (a waiter that is cancelled itself leaves the stopping to go on)."""
    task.cancel()
    stopper = asyncio.create_task(_until_done(task), name=f"stop-{task.get_name()}")
    _stopping.add(stopper)  # the loop keeps only weak references to tasks
    stopper.add_done_callback(_stopping.discard)
    return asyncio.shield(stopper)


async def _until_done(task: asyncio.Task) -> None:
    while True:
        await asyncio.wait([task], timeout=AGAIN_SECONDS)
        if task.done():
            return
        task.cancel()
