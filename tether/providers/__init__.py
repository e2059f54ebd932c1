"""Model providers behind the one endpoint: offline echo and scripted, and real vendors."""

from __future__ import annotations

from tether.api.model import ModelSpec
from tether.providers.anthropic import AnthropicProvider
from tether.providers.base import Provider, ProviderError
from tether.providers.echo import EchoProvider
from tether.providers.gemini import GeminiProvider
from tether.providers.openai_compatible import OpenAICompatibleProvider
from tether.providers.resilience import Retrying
from tether.providers.scripted import ScriptedProvider

__all__ = ["Provider", "ProviderError", "provider_for"]


def provider_for(spec: ModelSpec, api_key: str | None) -> Provider:
    """The provider a Model resource routes to, retrying as the Model says."""
    match spec.provider:
        case "echo":
            return EchoProvider()
        case "scripted":
            return ScriptedProvider(spec.responses or [])
        case "openai-compatible" | "openai":
            endpoint = spec.endpoint or "https://api.openai.com/v1"
            return Retrying(OpenAICompatibleProvider(endpoint, api_key), spec.retries)
        case "gemini":
            return Retrying(GeminiProvider(spec.endpoint, api_key, spec.vertex), spec.retries)
        case "anthropic":
            return Retrying(AnthropicProvider(spec.endpoint, api_key), spec.retries)
