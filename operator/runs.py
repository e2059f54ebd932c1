"""The runs this operator process is executing, so each interaction runs once and can be stopped.

A run has one part a cancel may interrupt (the model call, or creating the sandbox) and a part it
never interrupts (writing the ending). A cancel that comes while the interruptible part is in
flight makes the run end `cancelled`; one that comes after it is the caller's to write, and the
compare-and-swap of the ending decides which of the two endings stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, TypeVar

from tether.tasks import stop

_REMEMBERED = 10_000
log = logging.getLogger("tether.operator")
T = TypeVar("T")


class RunCancelled(Exception):
    """The client cancelled the run while its interruptible part was in flight."""


class Runs:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task] = {}
        self._interruptible: dict[str, asyncio.Task] = {}
        self._pending: set[str] = set()
        """Runs started whose interruptible part has not begun yet."""
        self._cancelled: set[str] = set()
        # Finished uids, so a stale watch event that still says in_progress starts nothing.
        self._finished: OrderedDict[str, None] = OrderedDict()

    def start(self, uid: str, run: Coroutine[Any, Any, None]) -> bool:
        """Start the run unless this uid is running or has finished here."""
        if uid in self._tasks or uid in self._finished:
            run.close()
            return False
        task = asyncio.create_task(run, name=f"run-{uid}")
        self._tasks[uid] = task
        self._pending.add(uid)
        task.add_done_callback(lambda done: self._done(uid, done))
        return True

    async def interruptible(self, uid: str, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` as the part of run `uid` that a cancel interrupts (RunCancelled)."""
        self._pending.discard(uid)
        if uid in self._cancelled:
            work.close()
            raise RunCancelled
        task = asyncio.create_task(work, name=f"work-{uid}")
        self._interruptible[uid] = task
        try:
            return await task
        except asyncio.CancelledError:
            if uid in self._cancelled and not cancelling():
                raise RunCancelled from None
            task.cancel()  # the operator is stopping
            raise
        finally:
            self._interruptible.pop(uid, None)

    def cancel(self, uid: str) -> bool:
        """Interrupt the run's interruptible part; False if none is in flight here (the caller
        then writes the `cancelled` ending itself)."""
        if uid in self._pending:  # it stops as its interruptible part begins
            self._cancelled.add(uid)
            return True
        task = self._interruptible.get(uid)
        if task is None or task.done():
            return False
        self._cancelled.add(uid)
        stop(task)
        return True

    def forget(self, uid: str) -> None:
        """The object is gone: stop its run silently."""
        if task := self._tasks.get(uid):
            stop(task)
        self._finished.pop(uid, None)

    def finished(self, uid: str) -> None:
        self._finished[uid] = None
        while len(self._finished) > _REMEMBERED:
            self._finished.popitem(last=False)

    async def shutdown(self) -> None:
        await asyncio.gather(*(stop(task) for task in list(self._tasks.values())))

    def _done(self, uid: str, task: asyncio.Task) -> None:
        self._tasks.pop(uid, None)
        self._pending.discard(uid)
        self._cancelled.discard(uid)
        if not task.cancelled() and (error := task.exception()):
            log.error("run %s crashed", uid, exc_info=error)


def cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just the work it awaited)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
