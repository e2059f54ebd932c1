"""The Agent: a reusable template for autonomous runs in sandbox pods."""

from __future__ import annotations

from pydantic import Field

from tether.api.base import ApiModel
from tether.api.common import AgentConfig, Condition, SandboxEnvironment, Tool


class AgentSpec(ApiModel):
    """How runs of this agent think, what they may use, and where they run."""

    description: str | None = None
    system_instruction: str | None = None
    base_agent: str | None = None
    """Another Agent whose settings this one extends."""
    tools: list[Tool] | None = None
    agent_config: AgentConfig | None = None
    """Defaults for the model and the limits; a request's agent_config overrides them."""
    base_environment: SandboxEnvironment | None = None
    aliases: list[str] | None = Field(default=None, max_length=64)
    """Other agent ids that resolve to this agent (e.g. a hosted agent's id)."""


class AgentStatus(ApiModel):
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
