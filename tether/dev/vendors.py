"""The Models `make up` installs for the vendor keys in its environment, and the one eva runs
on: the first vendor present, in the order below; with none, the offline `scripted` model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tether.api import API_VERSION


@dataclass(frozen=True)
class Vendor:
    provider: str
    key: str
    """The environment variable of its API key."""
    model: str
    """The environment variable that names the model to route to."""
    flagship: str
    """The model routed to when that variable is unset: the vendor's current flagship."""
    base_url: str
    """The environment variable of another endpoint speaking its protocol (a proxy, vLLM)."""
    keyless: bool = False
    """Whether an endpoint alone, without a key, is a vendor (a local OpenAI-compatible one)."""

    def present(self, environ: dict[str, str]) -> bool:
        return bool(environ.get(self.key) or (self.keyless and environ.get(self.base_url)))

    @property
    def secret(self) -> str:
        return f"{self.provider}-credentials"


VENDORS = (
    Vendor("gemini", "GEMINI_API_KEY", "GEMINI_MODEL", "gemini-pro-latest", "GEMINI_BASE_URL"),
    Vendor(
        "anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL", "claude-opus-5-5", "ANTHROPIC_BASE_URL"
    ),
    Vendor("openai", "OPENAI_API_KEY", "OPENAI_MODEL", "gpt-6.1-sol", "OPENAI_BASE_URL", True),
)
OFFLINE_AGENT_MODEL = "scripted"


def resource_name(id_: str) -> str:
    """A valid resource name for any model id (the id itself becomes an alias if it differs)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", id_.lower()).strip("-.")
    return name[:253] or "model"


def model_id(vendor: Vendor, environ: dict[str, str]) -> str:
    return environ.get(vendor.model) or vendor.flagship


def vendor_models(environ: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    """A Model for each vendor present, its key referenced from the vendor's Secret."""
    models = []
    for vendor in (v for v in VENDORS if v.present(environ)):
        id_ = model_id(vendor, environ)
        spec: dict[str, Any] = {"provider": vendor.provider, "upstreamModel": id_}
        if endpoint := environ.get(vendor.base_url):
            spec["endpoint"] = endpoint
            if vendor.keyless:  # any server speaking the protocol, not the vendor itself
                spec["provider"] = "openai-compatible"
        if resource_name(id_) != id_:
            spec["aliases"] = [id_]
        if environ.get(vendor.key):
            spec["credentials"] = {"secretRef": {"name": vendor.secret, "key": "api-key"}}
        meta = {"name": resource_name(id_), "namespace": namespace}
        models.append({"apiVersion": API_VERSION, "kind": "Model", "metadata": meta, "spec": spec})
    return models


def vendor_secrets(environ: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    """The Secrets holding the vendors' keys, readable by the platform only."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": vendor.secret, "namespace": namespace},
            "stringData": {"api-key": environ[vendor.key]},
        }
        for vendor in VENDORS
        if environ.get(vendor.key)
    ]


def agent_model(environ: dict[str, str]) -> str:
    """eva's model: the first vendor's present, else the offline scripted model."""
    present = [v for v in VENDORS if v.present(environ)]
    return model_id(present[0], environ) if present else OFFLINE_AGENT_MODEL


def summary(environ: dict[str, str]) -> str:
    """One line on which models eva and clients can reach."""
    present = [v for v in VENDORS if v.present(environ)]
    if not present:
        keys = ", ".join(v.key for v in VENDORS)
        return (
            f"No vendor key in the environment ({keys} or OPENAI_BASE_URL): "
            f"eva runs on the offline {OFFLINE_AGENT_MODEL!r} model."
        )
    routed = ", ".join(f"{model_id(v, environ)} ({v.provider})" for v in present)
    return f"Models: {routed}; eva runs on {agent_model(environ)}."
