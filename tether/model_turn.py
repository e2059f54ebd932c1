"""One model turn relayed into an interaction's event log: thoughts and text as they come, the
whole turn at the end. Model interactions (the operator) and sandboxes' model calls (the
gateway's proxy) both stream through here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tether.providers import Provider
from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    TextDelta,
    ThoughtDelta,
    ThoughtSignature,
    Usage,
)

Emit = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Turn:
    steps: list[dict[str, Any]]
    """The thought and model_output steps streamed, in order, from the relay's first index."""
    calls: list[FunctionCall]
    """The function calls the turn ends with (not streamed: their callers announce them)."""
    usage: Usage

    @property
    def text(self) -> str:
        return "".join(
            part["text"]
            for step in self.steps
            if step["type"] == "model_output"
            for part in step["content"]
        )

    def call_steps(self) -> list[dict[str, Any]]:
        return [
            {"type": "function_call", "id": c.id, "name": c.name, "arguments": c.arguments}
            for c in self.calls
        ]


async def relay(
    provider: Provider,
    request: ModelRequest,
    emit: Emit,
    index: int,
    on_first_output: Callable[[], None] | None = None,
) -> Turn:
    """Stream thoughts and text as steps from `index` on; collect the calls and the usage."""
    steps: list[dict[str, Any]] = []
    calls: list[FunctionCall] = []
    usage = Usage(0, 0)

    async def current(kind: str) -> dict[str, Any]:
        """The step under way if it takes more of `kind`, else a new one, announced."""
        last = steps[-1] if steps else None
        if last and last["type"] == kind and "signature" not in last:  # a signature seals
            return last
        if last:
            await emit("step.stop", index=index + len(steps) - 1)
        steps.append({"type": kind})
        await emit("step.start", index=index + len(steps) - 1, step={"type": kind})
        return steps[-1]

    async def delta(data: dict[str, Any]) -> None:
        await emit("step.delta", index=index + len(steps) - 1, delta=data)

    async for output in provider.generate(request):
        if on_first_output is not None:
            on_first_output()
            on_first_output = None
        match output:
            case TextDelta(text=text):
                step = await current("model_output")
                content = step.setdefault("content", [{"type": "text", "text": ""}])
                content[0]["text"] += text
                await delta({"type": "text", "text": text})
            case ThoughtDelta(text=text):
                step = await current("thought")
                summary = step.setdefault("summary", [{"type": "text", "text": ""}])
                summary[0]["text"] += text
                await delta({"type": "thought_summary", "content": {"type": "text", "text": text}})
            case ThoughtSignature(signature=signature):
                step = await current("thought")
                step["signature"] = signature
                await delta({"type": "thought_signature", "signature": signature})
            case FunctionCall():
                calls.append(output)
            case Usage():
                usage = output
    if steps:
        await emit("step.stop", index=index + len(steps) - 1)
    return Turn(steps, calls, usage)
