"""What every provider takes and yields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.errors import RunError


@dataclass(frozen=True)
class ModelRequest:
    """One model call: the whole conversation as wire-format steps, plus this turn's settings."""

    model: str
    steps: list[dict[str, Any]]
    system_instruction: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    generation_config: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    """A JSON schema the answer must follow."""
    response_mime_type: str | None = None
    """`application/json` alone asks for any JSON object."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class FunctionCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


Output = TextDelta | FunctionCall | Usage


class ProviderError(RunError):
    """The provider refused or failed; `message` is what the user sees in errors[]."""


class Provider(Protocol):
    def generate(self, request: ModelRequest) -> AsyncIterator[Output]: ...


def words(text: str) -> list[str]:
    return text.split()


def word_deltas(text: str) -> list[TextDelta]:
    """A reply streamed one word per delta; the deltas join back to the words spaced once."""
    return [TextDelta(w if i == 0 else f" {w}") for i, w in enumerate(words(text))]
