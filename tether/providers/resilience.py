"""Trying again: failures that may pass (429, 5xx, an unreachable vendor) are retried with
exponential backoff and jitter, honouring Retry-After, bounded in count and in time. A call is
retried only while it has streamed nothing: what a client has seen cannot be taken back."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tether.api.model import RetryPolicy
from tether.providers.base import ModelRequest, Output, Provider, ProviderError, Usage

BASE_DELAY = 0.5
MAX_DELAY = 8.0


def backoff(attempt: int, retry_after: float | None, jitter: float) -> float:
    """Seconds to wait before try `attempt + 1`: what the vendor asked for, else 0.5 s doubling
    per attempt up to 8 s, scaled by `jitter` in [0.5, 1] so clients spread out."""
    if retry_after is not None:
        return retry_after
    return min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1)) * jitter


class Retrying:
    """A provider that tries again, within its Model's retry policy."""

    def __init__(
        self,
        provider: Provider,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.sleep = sleep

    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            streamed = False
            try:
                async for output in self.provider.generate(request):
                    streamed = streamed or not isinstance(output, Usage)
                    yield output
                return
            except ProviderError as error:
                if streamed or not error.retryable:
                    raise
                delay = backoff(attempt, error.retry_after, random.uniform(0.5, 1.0))
                spent = time.monotonic() - started
                if attempt >= self.policy.attempts or spent + delay > self.policy.max_seconds:
                    tries = "once" if attempt == 1 else f"{attempt} times"
                    raise ProviderError(
                        error.code, f"{error.message} (tried {tries} in {spent:.1f}s)"
                    ) from error
                await self.sleep(delay)
