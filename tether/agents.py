"""What one agent run is: an Agent (over its base agents) with the request's overrides. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.api.agent import AgentSpec
from tether.api.common import AgentConfig, SandboxEnvironment
from tether.api.interaction import InteractionSpec
from tether.errors import RunError
from tether.sandbox_policy import SandboxPolicyError, refuse_secrets

DEFAULT_MAX_STEPS = 50
DEFAULT_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class AgentRun:
    """Everything a sandbox needs to know about its run, after every default was applied."""

    agent: str
    model: str
    system_instruction: str | None
    tools: list[dict[str, Any]]
    max_total_tokens: int | None
    max_steps: int
    timeout_seconds: int
    environment: SandboxEnvironment = field(default_factory=SandboxEnvironment)


class AgentConfigError(RunError):
    """The agent and the request together do not name a model, or cannot be combined."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_agent", message)


def resolve(agent: str, specs: list[AgentSpec], request: InteractionSpec) -> AgentRun:
    """`specs` runs from the most basic agent to the one named; later ones override earlier."""
    merged = AgentSpec()
    for spec in specs:
        merged = _overlay(merged, spec)
    config = _limits(merged.agent_config, request.agent_config)
    if not config.model:
        raise AgentConfigError(
            f"agent {agent!r} names no model: set agent_config.model in the request or the Agent"
        )
    instruction = "\n\n".join(
        text for text in (merged.system_instruction, request.system_instruction) if text
    )
    tools = [t.to_wire() for t in merged.tools or []] + [t.to_wire() for t in request.tools or []]
    environment = merged.base_environment or SandboxEnvironment()
    if isinstance(request.environment, SandboxEnvironment):
        environment = _overlay(environment, request.environment)
    try:
        refuse_secrets(environment, where=f"agent {agent!r}: environment")
    except SandboxPolicyError as error:
        raise AgentConfigError(str(error)) from error
    return AgentRun(
        agent=agent,
        model=config.model,
        system_instruction=instruction or None,
        tools=tools,
        max_total_tokens=config.max_total_tokens,
        max_steps=config.max_steps or DEFAULT_MAX_STEPS,
        timeout_seconds=config.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        environment=environment,
    )


def workspace_files(run: AgentRun) -> list[dict[str, str]]:
    """The environment's sources as files to write into /workspace before the run starts."""
    files = []
    for source in run.environment.sources or []:
        kind = source.type or "inline"
        if kind not in ("inline", "skill"):
            raise AgentConfigError(
                f"source type {kind!r} is not supported yet; give the content inline"
            )
        if source.content is None:
            raise AgentConfigError(f"a {kind} source needs its content")
        default = f"skills/{source.source or 'skill'}/SKILL.md" if kind == "skill" else None
        target = source.target or default
        if not target:
            raise AgentConfigError("an inline source needs a target path")
        files.append(
            {"path": target, "content": source.content, "encoding": source.encoding or "utf-8"}
        )
    return files


def _limits(agent: AgentConfig | None, request: AgentConfig | None) -> AgentConfig:
    """The run's model and limits: the request's over the Agent's. A config's `type` only says
    what the request itself may set (checked when it arrives), so it is not merged: an Agent's
    own max_steps and timeout_seconds still hold under a request of type "antigravity"."""
    merged = _merge(
        (agent or AgentConfig()).model_dump(exclude_none=True, exclude={"type"}),
        (request or AgentConfig()).model_dump(exclude_none=True, exclude={"type"}),
    )
    return AgentConfig.model_validate(merged)


def _overlay(base, top):
    """`top`'s fields that are set win over `base`'s; maps (env, resources) merge key by key."""
    merged = _merge(base.model_dump(exclude_none=True), top.model_dump(exclude_none=True))
    return type(base).model_validate(merged)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
