"""The sandbox ⇄ platform contract: what the operator hands a run (run.json), and what the agent
loop and the gateway's /internal/v1 API say to each other. One typed model per message, used on
both sides, so neither reads the other's dicts by string keys.

The sandbox imports this module and nothing else of the platform's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FILES_LIMIT = 10 * 1024 * 1024
"""The most a run's workspace archive may weigh (the upload, and what the agent packs)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


def model_output(text: str) -> dict[str, Any]:
    """The timeline step of a model's text answer."""
    return {"type": "model_output", "content": [{"type": "text", "text": text}]}


class SourceFile(_Message):
    """A file written into /workspace before the loop starts."""

    path: str
    content: str
    encoding: str = "utf-8"


class RunInput(_Message):
    """Everything the agent loop needs to know about its run (the Secret's run.json)."""

    system_instruction: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    max_steps: int
    files: list[SourceFile] = Field(default_factory=list)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """The conversation so far, in the wire spelling."""


class GenerateRequest(_Message):
    """POST /internal/v1/generate: one model call for the run."""

    steps: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    system_instruction: str | None = None


class FunctionCall(_Message):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class TokenUsage(_Message):
    input_tokens: int
    output_tokens: int


class GenerateReply(_Message):
    """The model's whole answer, once its deltas went to the interaction's events."""

    text: str
    function_calls: list[FunctionCall] = Field(default_factory=list)
    usage: TokenUsage
    budget_exceeded: bool
