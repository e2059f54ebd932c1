"""Model providers behind the one endpoint: offline echo and scripted, and real vendors."""

from __future__ import annotations

from tether.api.model import ModelSpec
from tether.providers.base import Provider, ProviderError
from tether.providers.echo import EchoProvider
from tether.providers.openai_compatible import OpenAICompatibleProvider
from tether.providers.scripted import ScriptedProvider

__all__ = ["Provider", "ProviderError", "provider_for"]


def provider_for(spec: ModelSpec, api_key: str | None) -> Provider:
    """The provider a Model resource routes to."""
    match spec.provider:
        case "echo":
            return EchoProvider()
        case "scripted":
            return ScriptedProvider(spec.responses or [])
        case "openai-compatible" | "openai":
            endpoint = spec.endpoint or "https://api.openai.com/v1"
            return OpenAICompatibleProvider(endpoint, api_key)
        case other:
            raise ProviderError(
                "provider_unavailable", f"provider {other!r} is not available in this build yet"
            )
