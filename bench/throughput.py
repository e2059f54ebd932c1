"""Throughput at a fixed concurrency, and the CPU each process spent per completed request.

The load generator is one asyncio loop in the benchmark's own process (aiohttp, keep-alive
connections), on the same cores as everything it measures; its own CPU is reported beside the
rest.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from calls import REPLY, Call

from tether.dev.accounting import cpu_of, rss_mib


@dataclass(frozen=True)
class Load:
    completed: int
    failed: int
    seconds: float
    cpu: dict[str, float]
    """CPU seconds spent during the load, per component."""
    generator_cpu: float
    load_average: tuple[float, float]
    """The machine's 1-minute load average before and after."""
    memory: tuple[dict[str, float], dict[str, float]]
    """MiB resident per component, before and after."""

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds

    def cpu_ms_per_request(self, component: str | None = None) -> float:
        spent = self.cpu[component] if component else sum(self.cpu.values())
        return spent * 1e3 / max(1, self.completed)


async def _drive(
    call: Call, concurrency: int, seconds: float, limit: int | None
) -> tuple[int, int, float]:
    completed = failed = sent = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal completed, failed, sent
            while time.monotonic() < deadline and (limit is None or sent < limit):
                sent += 1
                async with session.post(call.url, json=call.body, headers=call.headers) as r:
                    text = await r.text()
                if r.status == 200 and REPLY in text:
                    completed += 1
                else:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return completed, failed, time.monotonic() - started


def load(
    call: Call,
    pids: Mapping[str, int],
    concurrency: int,
    seconds: float,
    limit: int | None = None,
) -> Load:
    """`concurrency` clients sending `call` back to back for `seconds`, or `limit` calls."""
    average_before, memory_before = os.getloadavg()[0], rss_mib(pids)
    before, generator_before = cpu_of(pids), time.process_time()
    completed, failed, elapsed = asyncio.run(_drive(call, concurrency, seconds, limit))
    after, generator_after = cpu_of(pids), time.process_time()
    return Load(
        completed=completed,
        failed=failed,
        seconds=elapsed,
        cpu={name: after[name] - before[name] for name in pids},
        generator_cpu=generator_after - generator_before,
        load_average=(average_before, os.getloadavg()[0]),
        memory=(memory_before, rss_mib(pids)),
    )
