"""The run registry: a cancel interrupts only the interruptible part of a run."""

from __future__ import annotations

import asyncio

from tether.operator.runs import RunCancelled, Runs


async def test_a_cancel_during_the_model_call_ends_the_run_cancelled():
    runs, outcome = Runs(), []

    async def run() -> None:
        try:
            await runs.interruptible("u1", asyncio.sleep(30))
        except RunCancelled:
            outcome.append("cancelled")

    assert runs.start("u1", run())
    await asyncio.sleep(0.01)
    assert runs.cancel("u1")
    await asyncio.sleep(0.01)
    assert outcome == ["cancelled"]


async def test_a_cancel_after_the_call_is_left_to_the_caller():
    runs = Runs()
    ending = asyncio.Event()

    async def run() -> None:
        await runs.interruptible("u2", asyncio.sleep(0))
        await ending.wait()  # writing the ending: not interruptible

    runs.start("u2", run())
    await asyncio.sleep(0.01)
    assert not runs.cancel("u2")
    ending.set()


async def test_stopping_the_operator_stops_the_work_without_calling_it_a_cancel():
    runs, started, seen = Runs(), asyncio.Event(), []

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("work stopped")
            raise

    async def run() -> None:
        try:
            await runs.interruptible("u3", work())
        except RunCancelled:
            seen.append("ended as cancelled")  # wrong: the next operator resumes this run

    runs.start("u3", run())
    await started.wait()
    await runs.shutdown()
    assert seen == ["work stopped"]


async def test_a_finished_run_is_never_started_again_here():
    runs = Runs()
    runs.finished("u4")

    async def run() -> None:
        raise AssertionError("started twice")

    assert not runs.start("u4", run())


async def test_a_cancel_before_the_run_reaches_its_call_stops_it_there():
    """A run started but not yet at its call (its task not scheduled yet) never makes the
    call: a cancel that came first ends it cancelled when it gets there."""
    runs, outcome, called = Runs(), [], []

    async def call() -> None:
        called.append(True)

    async def run() -> None:
        try:
            await runs.interruptible("u5", call())
        except RunCancelled:
            outcome.append("cancelled")

    assert runs.start("u5", run())
    assert runs.cancel("u5")  # before the task ran at all
    await asyncio.sleep(0.01)
    assert (outcome, called) == (["cancelled"], [])


async def test_a_cancel_the_work_loses_is_sent_again_until_the_run_ends():
    """On Python 3.11 `asyncio.wait_for`, under every redis-py command, can lose a cancel
    (tether/tasks.py); here the work loses the first one outright."""
    runs, outcome, lost = Runs(), [], asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            lost.set()  # and carries on, as if never cancelled
        await asyncio.sleep(30)

    async def run() -> None:
        try:
            await runs.interruptible("u4", work())
        except RunCancelled:
            outcome.append("cancelled")

    runs.start("u4", run())
    await asyncio.sleep(0.01)
    assert runs.cancel("u4")
    await lost.wait()
    async with asyncio.timeout(2):
        while not outcome:
            await asyncio.sleep(0.01)
    assert outcome == ["cancelled"]
