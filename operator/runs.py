"""The runs this operator process is executing, so each interaction runs once and can be stopped."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

_REMEMBERED = 10_000
log = logging.getLogger("tether.operator")


class Runs:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task] = {}
        self._cancel_requested: set[str] = set()
        # Finished uids, so a stale watch event that still says in_progress starts nothing.
        self._finished: OrderedDict[str, None] = OrderedDict()

    def start(self, uid: str, run: Coroutine[Any, Any, None]) -> bool:
        """Start the run unless this uid is running or has finished here."""
        if uid in self._tasks or uid in self._finished:
            run.close()
            return False
        task = asyncio.create_task(run, name=f"run-{uid}")
        self._tasks[uid] = task
        task.add_done_callback(lambda done: self._done(uid, done))
        return True

    def cancel(self, uid: str) -> bool:
        """Ask a live run to end as cancelled; False if it is not running here."""
        task = self._tasks.get(uid)
        if task is None or task.done():
            return False
        self._cancel_requested.add(uid)
        task.cancel()
        return True

    def cancel_requested(self, uid: str) -> bool:
        return uid in self._cancel_requested

    def forget(self, uid: str) -> None:
        """The object is gone: stop its run silently."""
        if task := self._tasks.get(uid):
            task.cancel()
        self._finished.pop(uid, None)

    def finished(self, uid: str) -> None:
        self._finished[uid] = None
        while len(self._finished) > _REMEMBERED:
            self._finished.popitem(last=False)

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, uid: str, task: asyncio.Task) -> None:
        self._tasks.pop(uid, None)
        self._cancel_requested.discard(uid)
        if not task.cancelled() and (error := task.exception()):
            log.error("run %s crashed", uid, exc_info=error)
