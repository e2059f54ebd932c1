"""Resolving an agent run from an Agent (and its bases) and the request's overrides."""

from __future__ import annotations

import pytest

from tether.agents import AgentConfigError, resolve
from tether.api.agent import AgentSpec
from tether.api.interaction import InteractionSpec

EVA = AgentSpec.from_kube(
    {
        "agentConfig": {"model": "scripted", "maxSteps": 30, "timeoutSeconds": 900},
        "baseEnvironment": {"network": {"allowlist": []}},
    }
)


def request(**fields) -> InteractionSpec:
    return InteractionSpec.from_wire({"agent": "eva", "input": "go", **fields})


def test_an_antigravity_config_runs_under_the_agents_own_limits():
    run = resolve(
        "eva",
        [EVA],
        request(agent_config={"type": "antigravity", "model": "fast", "max_total_tokens": 500}),
    )
    assert (run.model, run.max_total_tokens, run.max_steps, run.timeout_seconds) == (
        "fast",
        500,
        30,
        900,
    )


def test_an_antigravity_request_still_cannot_set_max_steps():
    with pytest.raises(ValueError, match='type "antigravity" takes only model'):
        request(agent_config={"type": "antigravity", "max_steps": 3})


def test_a_dynamic_config_overrides_the_agents_limits():
    run = resolve(
        "eva", [EVA], request(agent_config={"type": "dynamic", "max_steps": 3, "model": "m"})
    )
    assert (run.model, run.max_steps, run.timeout_seconds) == ("m", 3, 900)


def test_an_agent_whose_environment_carries_a_secret_cannot_run():
    leaky = AgentSpec.from_kube(
        {
            "baseAgent": "eva",
            "baseEnvironment": {"env": {"KEY": {"secretRef": {"name": "openai", "key": "key"}}}},
        }
    )
    with pytest.raises(
        AgentConfigError, match=r"environment\.env\.KEY takes its value from a Secret"
    ):
        resolve("leaky", [EVA, leaky], request())
