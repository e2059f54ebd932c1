"""The built-in offline scripted model: replays canned turns (text, tool calls, delays)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tether.api.model import ScriptedResponse
from tether.conversation import model_turns, text_of
from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    Output,
    ProviderError,
    Usage,
    word_deltas,
    words,
)


class ScriptedProvider:
    """The n-th answer in a conversation is responses[n]: deterministic, and restart-safe."""

    def __init__(self, responses: list[ScriptedResponse]) -> None:
        self.responses = responses

    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        turn = model_turns(request.steps)
        if turn >= len(self.responses):
            raise ProviderError(
                "script_exhausted",
                f"the scripted model has {len(self.responses)} responses and this is answer "
                f"#{turn + 1} of the conversation",
            )
        response = self.responses[turn]
        if response.delay_seconds:
            await asyncio.sleep(response.delay_seconds)
        output_words = 0
        if response.text:
            for delta in word_deltas(response.text):
                yield delta
            output_words += len(words(response.text))
        for i, call in enumerate(response.function_calls or []):
            yield FunctionCall(
                id=f"call-{turn}-{i}", name=call["name"], arguments=call.get("arguments") or {}
            )
            output_words += 1
        seen = sum(len(words(text_of(s))) for s in request.steps)
        yield Usage(input_tokens=seen, output_tokens=output_words)
