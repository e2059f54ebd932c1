"""The Agent: a reusable template for autonomous runs in sandbox pods."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from tether.api.base import ApiModel
from tether.api.common import AgentConfig, Condition, SandboxEnvironment, Tool

AGENT_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""An agent id a tenant may give: a Kubernetes object name that starts with a letter."""


MAX_WARM_POOL = 50


class WarmPool(ApiModel):
    """Sandbox pods kept started and idle for this agent's runs, in the Agent's namespace: a run
    claims one instead of waiting for a pod to start. An idle pod holds nothing secret; a run
    gets its token and its input when it claims the pod."""

    size: int = Field(default=0, ge=0, le=MAX_WARM_POOL)
    """How many idle pods to keep; the pool refills behind the runs that claim them."""


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
    warm_pool: WarmPool | None = None
    """Idle sandbox pods kept for this agent's runs (not inherited by agents based on it)."""


class AgentObject(AgentSpec):
    """An Agent as the API shows it and takes it (the SDK's `Agent`): its id and its spec."""

    id: str | None = None
    """The agent's id; on create, a name for it (one is made when none is given)."""

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is not None and not AGENT_ID.match(value):
            raise ValueError(
                f"agent id {value!r} must be at most 63 lowercase letters, digits and dashes, "
                "starting with a letter and ending with a letter or digit"
            )
        return value

    def spec(self) -> AgentSpec:
        return AgentSpec.model_validate(self.model_dump(exclude={"id"}, exclude_none=True))


class AgentList(ApiModel):
    agents: list[AgentObject]
    next_page_token: str | None = None


class AgentStatus(ApiModel):
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
