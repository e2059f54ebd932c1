"""What one agent run is: an Agent (over its base agents) with the request's overrides. Pure."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tether import mcp_tools
from tether.api.agent import AgentSpec
from tether.api.common import AgentConfig, SandboxEnvironment, Source, Tool
from tether.api.environment import EnvironmentSpec
from tether.api.interaction import InteractionSpec
from tether.api.internal import BROWSER_FUNCTIONS
from tether.errors import RunError
from tether.sandbox_policy import SandboxPolicyError, refuse_secrets

DEFAULT_MAX_STEPS = 50
DEFAULT_TIMEOUT_SECONDS = 900
BUILT_IN_TOOLS = frozenset({"code_execution", "url_context", "computer_use"})
"""The built-in tools of agent runs: code_execution and url_context every run has (run_code,
fetch_url and the workspace's files); computer_use (environment "browser") adds the browser."""
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


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
    environment_id: str | None = None
    """The persistent Environment whose workspace the run uses; None: a fresh one."""
    seeds: list[Source] = field(default_factory=list)
    """The Environment's sources: written where the workspace has nothing yet."""


class AgentConfigError(RunError):
    """The agent and the request together do not name a model, or cannot be combined."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_agent", message)


def resolve(
    agent: str,
    specs: list[AgentSpec],
    request: InteractionSpec,
    workspace: tuple[str, EnvironmentSpec] | None = None,
) -> AgentRun:
    """`specs` runs from the most basic agent to the one named; later ones override earlier.
    `workspace` is the persistent Environment (id, spec) the run uses: its env, network and
    instruction come between the agent's and the request's."""
    merged = _merged(specs)
    config = _limits(merged.agent_config, request.agent_config)
    if not config.model:
        raise AgentConfigError(
            f"agent {agent!r} names no model: set agent_config.model in the request or the Agent"
        )
    environment_id, kept = workspace or (None, EnvironmentSpec())
    instruction = "\n\n".join(
        text
        for text in (merged.system_instruction, kept.system_instruction, request.system_instruction)
        if text
    )
    tools = [t.to_wire() for t in merged.tools or []] + [t.to_wire() for t in request.tools or []]
    environment = merged.base_environment or SandboxEnvironment()
    environment = _overlay(environment, SandboxEnvironment(env=kept.env, network=kept.network))
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
        environment_id=environment_id,
        seeds=list(kept.sources or []),
    )


def pool_environment(agent: str, specs: list[AgentSpec]) -> SandboxEnvironment:
    """The sandbox environment of the agent's runs when the request changes nothing: what its
    warm pool's pods are built for."""
    environment = _merged(specs).base_environment or SandboxEnvironment()
    try:
        refuse_secrets(environment, where=f"agent {agent!r}: environment")
    except SandboxPolicyError as error:
        raise AgentConfigError(str(error)) from error
    return environment


def _merged(specs: list[AgentSpec]) -> AgentSpec:
    merged = AgentSpec()
    for spec in specs:
        merged = _overlay(merged, spec)
    return merged


def workspace_files(run: AgentRun) -> list[dict[str, Any]]:
    """The sources as files to write into /workspace before the run starts: the request's and
    the agent's every time, a persistent Environment's only where nothing is there yet (a run
    may have changed them since)."""
    return [_file(s) for s in run.environment.sources or []] + [
        {**_file(s), "if_absent": True} for s in run.seeds
    ]


def _file(source: Source) -> dict[str, Any]:
    kind = source.type or "inline"
    if kind == "repository":
        url = repository_url(source.source or "")
        return {"path": source.target or repository_name(url), "repository": url}
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
    return {"path": target, "content": source.content, "encoding": source.encoding or "utf-8"}


def repository_url(source: str) -> str:
    """A repository source as the https:// URL it is cloned from ("github.com/o/r" too)."""
    url = source if "://" in source else f"https://{source}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise AgentConfigError(
            f"repository {source!r} must be an https:// URL without credentials in it"
        )
    return url


def repository_name(url: str) -> str:
    """Where a repository lands when its source names no target: its last path segment."""
    last = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return last.removesuffix(".git") or "repository"


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


def tool_problems(tools: list[Tool]):
    """What is wrong with an agent's or an agent interaction's tools: function tools need a
    unique name and an object schema; built-in tools must be ones agent runs have."""
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if tool.type == "function":
            if not tool.name or not TOOL_NAME.match(tool.name):
                yield f"{where}.name: a function tool needs a name of letters, digits, _ and -"
            elif tool.name in seen:
                yield f"{where}.name: {tool.name!r} is declared twice"
            seen.add(tool.name or "")
            if tool.parameters is not None and tool.parameters.get("type") != "object":
                yield f"{where}.parameters: a function's parameters are an object schema"
        elif tool.type == "mcp_server":
            continue  # below
        elif tool.type not in BUILT_IN_TOOLS:
            yield (
                f"{where}: the built-in tool {tool.type!r} is not available to agents; "
                f"they have {', '.join(sorted(BUILT_IN_TOOLS))}, mcp_server and function tools"
            )
        elif tool.type == "computer_use":
            yield from _computer_use_problems(where, tool)
    yield from mcp_tools.problems([tool.to_wire() for tool in tools])


def _computer_use_problems(where: str, tool: Tool):
    if tool.environment not in (None, "browser"):
        yield f"{where}.environment: agents operate a browser, not a {tool.environment!r}"
    for name in tool.excluded_predefined_functions or []:
        if name not in BROWSER_FUNCTIONS:
            yield (
                f"{where}.excluded_predefined_functions: {name!r} is not a browser tool; "
                f"they are {', '.join(BROWSER_FUNCTIONS)}"
            )
    for setting in ("disabled_safety_policies", "enable_prompt_injection_detection"):
        if (tool.model_extra or {}).get(setting) is not None:
            yield f"{where}.{setting}: Tether's browser tools have no safety policies to set"
