"""The built-in offline model: echoes the user, for trying Tether without any vendor key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from tether.conversation import text_of, user_texts
from tether.providers.base import ModelRequest, Output, Usage, word_deltas, words

_SLEEP = re.compile(r"^/sleep\s+(\d+(?:\.\d+)?)\s*$")


def echo_reply(steps: list[dict]) -> str:
    """The last user text; `/history` lists the earlier user turns; `/sleep N` is handled apart."""
    texts = user_texts(steps)
    last = texts[-1] if texts else ""
    if last.strip() == "/history":
        return " | ".join(texts[:-1])
    return last


class EchoProvider:
    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        texts = user_texts(request.steps)
        last = texts[-1].strip() if texts else ""
        if sleep := _SLEEP.match(last):
            await asyncio.sleep(float(sleep.group(1)))  # cancellable like any await
            reply = f"slept {sleep.group(1)}"
        else:
            reply = echo_reply(request.steps)
        for delta in word_deltas(reply):
            yield delta
        seen = sum(len(words(text_of(s))) for s in request.steps)
        yield Usage(input_tokens=seen, output_tokens=len(words(reply)))
