"""The Environment: a persistent sandbox workspace reused across interactions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tether.api.base import ApiModel
from tether.api.common import Condition, EgressAllowlist, Source


class EnvironmentSpec(ApiModel):
    """A workspace volume with its starting files and its network policy."""

    sources: list[Source] | None = None
    env: dict[str, str] | None = None
    network: Literal["disabled"] | EgressAllowlist | None = None
    storage: str | None = Field(default=None, pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)?$")
    """Size of the workspace volume, e.g. 1Gi."""
    system_instruction: str | None = None


class EnvironmentStatus(ApiModel):
    phase: Literal["active", "expired"] | None = None
    file_count: int | None = None
    size_bytes: int | None = None
    last_accessed: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
