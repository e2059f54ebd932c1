"""The Model: routes a model id a client sends to a provider. The hosted API cannot do this."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tether.api.base import FREE_FORM, ApiModel
from tether.api.common import Condition, SecretKeyRef

Provider = Literal["gemini", "openai", "anthropic", "openai-compatible", "echo", "scripted"]


class ScriptedResponse(ApiModel):
    """One canned model turn of the offline `scripted` provider."""

    text: str | None = None
    function_calls: list[dict[str, Any]] | None = Field(default=None, json_schema_extra=FREE_FORM)
    """[{"name": ..., "arguments": {...}}]"""
    delay_seconds: float | None = Field(default=None, ge=0)


class Credentials(ApiModel):
    secret_ref: SecretKeyRef


class RetryPolicy(ApiModel):
    """How hard to try a vendor whose failure may pass (429, 5xx, unreachable)."""

    attempts: int = Field(default=3, ge=1, le=10)
    """Tries in all, the first included."""
    max_seconds: float = Field(default=60, ge=1, le=600)
    """No retry starts once this long has gone since the first try (backoff included)."""


class VertexAI(ApiModel):
    """Gemini through Vertex AI: the Google Cloud project and region to call, signed in as the
    service account whose key file `credentials` names."""

    project: str = Field(min_length=1)
    location: str = Field(min_length=1)
    """A region such as europe-west4, or global."""


class ModelSpec(ApiModel):
    """Which provider answers for this model id, and how to reach it."""

    provider: Provider
    upstream_model: str | None = None
    """The provider's own name for the model; defaults to the resource's name."""
    endpoint: str | None = None
    """Base URL of the provider's API (required for openai-compatible)."""
    credentials: Credentials | None = None
    """The Secret key holding the vendor's API key (for Vertex AI: a service-account key file)."""
    vertex: VertexAI | None = None
    """Gemini on Vertex AI instead of the Gemini API (provider gemini only)."""
    aliases: list[str] | None = Field(default=None, max_length=64)
    """Other model ids that route here (ids that are not valid resource names, for example)."""
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    fallbacks: list[str] | None = Field(default=None, max_length=8)
    """Model ids that answer, in order, when this one fails in a way that is not the request's
    fault (rate limited, unavailable, credentials refused). Only this Model's own list is
    followed, never a fallback's."""
    max_concurrency: int | None = Field(default=None, ge=1)
    """The most calls to this Model in flight at once, across the whole platform. Model
    interactions over it wait as `queued` and start in the order they came; agent runs' calls
    wait in the same line."""
    responses: list[ScriptedResponse] | None = None
    """For the scripted provider: the turns to replay, in order."""

    @model_validator(mode="after")
    def _provider_needs(self) -> ModelSpec:
        if self.provider == "openai-compatible" and not self.endpoint:
            raise ValueError("provider openai-compatible needs an endpoint")
        if self.provider == "scripted" and not self.responses:
            raise ValueError("provider scripted needs responses")
        if self.vertex is not None and self.provider != "gemini":
            raise ValueError("vertex applies only to provider gemini")
        if self.vertex is not None and self.credentials is None:
            raise ValueError("vertex needs credentials: a Secret key holding a service-account key")
        return self


class ModelStatus(ApiModel):
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
