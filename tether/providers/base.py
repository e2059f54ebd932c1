"""What every provider takes and yields, and how a vendor's failure is named."""

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
class ThoughtDelta:
    """Reasoning the model shows (a summary of it, as most vendors give)."""

    text: str


@dataclass(frozen=True)
class ThoughtSignature:
    """The vendor's opaque seal over its reasoning, to be sent back with the turn. It belongs to
    the thought being streamed; with none under way, to the part that follows it."""

    signature: str


@dataclass(frozen=True)
class FunctionCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    """All the prompt, cached tokens included."""
    output_tokens: int
    """The answer, reasoning excluded."""
    thought_tokens: int = 0
    cached_tokens: int = 0

    @property
    def spent(self) -> int:
        """What the call costs against a budget: thinking is paid for like output."""
        return self.input_tokens + self.output_tokens + self.thought_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.thought_tokens + other.thought_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def as_status(self) -> dict[str, int]:
        """The Interaction status's usage (camelCase)."""
        return {
            "totalInputTokens": self.input_tokens,
            "totalOutputTokens": self.output_tokens,
            "totalThoughtTokens": self.thought_tokens,
            "totalCachedTokens": self.cached_tokens,
            "totalTokens": self.spent,
        }


Output = TextDelta | ThoughtDelta | ThoughtSignature | FunctionCall | Usage

RETRYABLE = frozenset({"rate_limited", "provider_unavailable"})
"""Failures that may pass: the same request can be tried again, or on another Model."""
NOT_THE_REQUESTS_FAULT = RETRYABLE | {"auth_failed", "credentials_missing"}
"""Failures a fallback Model can answer instead: the request itself was fine."""


class ProviderError(RunError):
    """The provider refused or failed; `message` is what the user sees in errors[]."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
        """Seconds the vendor asked us to wait (its Retry-After header)."""

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


_CONTEXT_WORDS = (
    "context length",
    "context window",
    "too long",
    "too many tokens",
    "maximum context",
)


def failure(status: int | None, message: str, retry_after: str | None = None) -> ProviderError:
    """A vendor's HTTP failure (None: it could not be reached) as the error a user reads, its
    code saying whether to try again, fix the request, or fix the Model's credentials."""
    if status is None:
        return ProviderError("provider_unavailable", message)
    if status == 429:
        code = "rate_limited"
    elif status in (401, 403):
        code = "auth_failed"
    elif status == 413 or (status == 400 and any(w in message.lower() for w in _CONTEXT_WORDS)):
        code = "context_too_long"
    elif status in (408, 409) or status >= 500:
        code = "provider_unavailable"
    else:
        code = "invalid_request"
    return ProviderError(code, message, retry_after=retry_seconds(retry_after))


def retry_seconds(header: str | None) -> float | None:
    """Retry-After in seconds (HTTP dates are not worth honouring from model vendors)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


class Provider(Protocol):
    def generate(self, request: ModelRequest) -> AsyncIterator[Output]: ...


def words(text: str) -> list[str]:
    return text.split()


def word_deltas(text: str) -> list[TextDelta]:
    """A reply streamed one word per delta; the deltas join back to the words spaced once."""
    return [TextDelta(w if i == 0 else f" {w}") for i, w in enumerate(words(text))]
