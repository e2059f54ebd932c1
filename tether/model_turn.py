"""One model turn relayed into an interaction's event log: deltas as they come, the whole turn
at the end. Model interactions (the operator) and sandboxes' model calls (the gateway's proxy)
both stream through here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tether.providers import Provider
from tether.providers.base import FunctionCall, ModelRequest, TextDelta, Usage

Emit = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Turn:
    text: str
    calls: list[FunctionCall]
    usage: Usage


async def relay(
    provider: Provider,
    request: ModelRequest,
    emit: Emit,
    index: int,
    on_first_output: Callable[[], None] | None = None,
) -> Turn:
    """Stream the text as a model_output step at `index`; collect the calls and the usage."""
    text: list[str] = []
    calls: list[FunctionCall] = []
    usage = Usage(0, 0)
    async for output in provider.generate(request):
        if on_first_output is not None:
            on_first_output()
            on_first_output = None
        match output:
            case TextDelta(text=delta):
                if not text:
                    await emit("step.start", index=index, step={"type": "model_output"})
                text.append(delta)
                await emit("step.delta", index=index, delta={"type": "text", "text": delta})
            case FunctionCall():
                calls.append(output)
            case Usage():
                usage = output
    if text:
        await emit("step.stop", index=index)
    return Turn("".join(text), calls, usage)
