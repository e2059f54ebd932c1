"""The Environment: a persistent sandbox workspace reused across interactions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tether.api.base import ApiModel
from tether.api.common import Condition, EgressAllowlist, Source
from tether.api.interaction import Timestamp

Network = Literal["disabled"] | EgressAllowlist
Storage = Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)?$")]
IdleSeconds = Annotated[int, Field(ge=1, le=366 * 24 * 3600)]


class EnvironmentSpec(ApiModel):
    """A workspace volume with its starting files and its network policy."""

    sources: list[Source] | None = None
    """Written into the workspace by the first run that does not find them there."""
    env: dict[str, str] | None = None
    network: Network | None = None
    storage: Storage | None = None
    """Size of the workspace volume, e.g. 1Gi."""
    system_instruction: str | None = None
    """Added to the system instruction of every run in this environment."""
    idle_timeout_seconds: IdleSeconds | None = None
    """How long the environment may go unused before its volume is deleted (the platform's
    default when unset)."""


class EnvironmentStatus(ApiModel):
    phase: Literal["active", "expired"] | None = None
    file_count: int | None = None
    size_bytes: int | None = None
    last_accessed: Timestamp | None = None
    expired: Timestamp | None = None
    """When the idle expiry deleted the volume."""
    active_interaction: str | None = None
    """The agent run using the workspace now: one at a time."""
    claimed: Timestamp | None = None
    """When active_interaction took the workspace."""
    conditions: list[Condition] | None = None
    observed_generation: int | None = None


class CreateEnvironmentRequest(ApiModel):
    """POST /environments: the SDK's CreateEnvironmentRequest, and Tether's extensions (env,
    storage, idle_timeout_seconds)."""

    mode: Literal["on_demand", "self_hosted"] | None = None
    sources: list[Source] | None = None
    network: Network | None = None
    system_instruction: str | None = None
    from_environment: str | None = None
    custom_config: dict | None = None
    env: dict[str, str] | None = None
    storage: Storage | None = None
    idle_timeout_seconds: IdleSeconds | None = None

    def spec(self) -> EnvironmentSpec:
        return EnvironmentSpec.model_validate(
            self.model_dump(
                exclude={"mode", "from_environment", "custom_config"}, exclude_none=True
            )
        )


class EnvironmentObject(ApiModel):
    """An Environment as the API shows it (the SDK's `Environment`)."""

    id: str
    mode: Literal["on_demand"] = "on_demand"
    status: Literal["active", "expired"] = "active"
    created: Timestamp | None = None
    updated: Timestamp | None = None
    last_accessed: Timestamp | None = None
    size_bytes: int | None = None
    file_count: int | None = None
    sources: list[Source] | None = None
    network: Network | None = None
    system_instruction: str | None = None
    env: dict[str, str] | None = None
    storage: str | None = None
    idle_timeout_seconds: int | None = None
    active_interaction: str | None = None
    """Tether's extension: the agent run using the workspace now."""


class EnvironmentList(ApiModel):
    environments: list[EnvironmentObject]
    next_page_token: str | None = None
