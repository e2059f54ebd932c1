"""Which Model answers a turn: the one asked for, else its fallbacks in order, when it fails in a
way that is not the request's fault (rate limited, unavailable, refused credentials) and nothing
has been streamed yet. A fallback that cannot take the request (its media or settings) is passed
over, never sent a request it would silently shortchange."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext

from tether.catalog import ResolvedModel
from tether.model_turn import Emit, Turn, relay
from tether.providers import Provider, ProviderError
from tether.providers.base import NOT_THE_REQUESTS_FAULT, ModelRequest

log = logging.getLogger("tether")

Lookup = Callable[[str], Awaitable[ResolvedModel | None]]
ProviderOf = Callable[[ResolvedModel], Awaitable[Provider]]


async def answer(
    model: ResolvedModel,
    request: ModelRequest,
    emit: Emit,
    index: int,
    *,
    lookup: Lookup,
    provider_of: ProviderOf,
    accepts: Callable[[ResolvedModel], bool] = lambda model: True,
    hold: Callable[[ResolvedModel], AbstractAsyncContextManager] = lambda model: nullcontext(),
    on_first_output: Callable[[], None] | None = None,
) -> tuple[Turn, ResolvedModel]:
    """The turn, and the Model that gave it."""
    streamed = False

    async def tracked(*args, **fields) -> None:
        nonlocal streamed
        streamed = True
        await emit(*args, **fields)

    candidate, fallbacks = model, list(model.spec.fallbacks or [])
    while True:
        try:
            provider = await provider_of(candidate)
            async with hold(candidate):  # the Model's cap on calls in flight
                turn = await relay(
                    provider,
                    dataclasses.replace(request, model=candidate.upstream),
                    tracked,
                    index,
                    on_first_output,
                )
            return turn, candidate
        except ProviderError as error:
            if streamed or error.code not in NOT_THE_REQUESTS_FAULT:
                raise
            following = await _next_fallback(fallbacks, lookup, accepts)
            if following is None:
                raise
            log.info(
                "model %s failed (%s); falling back to %s",
                candidate.name,
                error.code,
                following.name,
            )
            candidate = following


async def _next_fallback(
    fallbacks: list[str], lookup: Lookup, accepts: Callable[[ResolvedModel], bool]
) -> ResolvedModel | None:
    while fallbacks:
        id_ = fallbacks.pop(0)
        found = await lookup(id_)
        if found is None:
            log.warning("fallback model %r not found; passed over", id_)
        elif not accepts(found):
            log.info("fallback model %r cannot take this request; passed over", id_)
        else:
            return found
    return None
