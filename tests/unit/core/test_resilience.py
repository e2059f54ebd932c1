"""Retries: failures that may pass are tried again within the Model's bounds, honouring
Retry-After; the request's own faults, and calls that already streamed, are not."""

from __future__ import annotations

import asyncio

import pytest

from tether.api.model import RetryPolicy
from tether.providers.base import ModelRequest, ProviderError, TextDelta, Usage, failure
from tether.providers.resilience import Retrying, backoff


class Flaky:
    """Fails with `errors` in turn, then answers."""

    def __init__(self, *errors, then=("ok",), stream_before_failing=False):
        self.errors = list(errors)
        self.then = then
        self.calls = 0
        self.stream_before_failing = stream_before_failing

    async def generate(self, request):
        self.calls += 1
        if self.errors:
            if self.stream_before_failing:
                yield TextDelta("partial")
            raise self.errors.pop(0)
        for text in self.then:
            yield TextDelta(text)
        yield Usage(1, 1)


def attempt(provider, policy: RetryPolicy | None = None):
    waits: list[float] = []

    async def sleep(seconds):
        waits.append(seconds)

    async def collect():
        retrying = Retrying(provider, policy or RetryPolicy(), sleep=sleep)
        return [o async for o in retrying.generate(ModelRequest("m", []))]

    return asyncio.run(collect()), waits


def test_a_rate_limit_is_waited_out_for_as_long_as_the_vendor_asks():
    provider = Flaky(failure(429, "slow down", "2.5"), failure(503, "busy"))
    outputs, waits = attempt(provider)
    assert outputs[0] == TextDelta("ok")
    assert provider.calls == 3
    assert waits[0] == 2.5
    assert 0.5 <= waits[1] <= 1.0  # the second backoff, jittered


def test_the_requests_own_faults_are_not_retried():
    provider = Flaky(failure(400, "bad schema"))
    with pytest.raises(ProviderError) as raised:
        attempt(provider)
    assert raised.value.code == "invalid_request"
    assert provider.calls == 1


def test_retries_stop_at_the_attempts_and_say_how_many():
    provider = Flaky(*[failure(None, "refused")] * 5)
    with pytest.raises(ProviderError) as raised:
        attempt(provider, RetryPolicy(attempts=3))
    assert provider.calls == 3
    assert raised.value.code == "provider_unavailable"
    assert raised.value.message.startswith("refused (tried 3 times in ")


def test_a_wait_past_the_time_bound_is_not_started():
    provider = Flaky(failure(429, "quota", "120"))
    with pytest.raises(ProviderError) as raised:
        attempt(provider, RetryPolicy(max_seconds=60))
    assert provider.calls == 1
    assert raised.value.code == "rate_limited"
    assert "tried once" in raised.value.message


def test_a_call_that_streamed_is_not_retried():
    provider = Flaky(failure(503, "dropped"), stream_before_failing=True)
    with pytest.raises(ProviderError):
        attempt(provider)
    assert provider.calls == 1


@pytest.mark.parametrize(
    "status, message, code",
    [
        (429, "quota", "rate_limited"),
        (401, "bad key", "auth_failed"),
        (403, "no access", "auth_failed"),
        (400, "prompt is too long: 250000 tokens > 200000 maximum", "context_too_long"),
        (400, "unknown field", "invalid_request"),
        (404, "no such model", "invalid_request"),
        (500, "oops", "provider_unavailable"),
        (529, "overloaded", "provider_unavailable"),
        (None, "connection refused", "provider_unavailable"),
    ],
)
def test_vendor_failures_map_to_codes_a_user_can_act_on(status, message, code):
    assert failure(status, message).code == code


def test_backoff_doubles_and_is_capped():
    assert [backoff(n, None, 1.0) for n in (1, 2, 3, 6, 9)] == [0.5, 1.0, 2.0, 8.0, 8.0]
