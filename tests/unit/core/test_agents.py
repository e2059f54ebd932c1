"""Resolving an agent run from an Agent (and its bases) and the request's overrides."""

from __future__ import annotations

import pytest

from tether.agents import AgentConfigError, resolve, tool_problems
from tether.api.agent import AgentSpec
from tether.api.common import Tool
from tether.api.environment import EnvironmentSpec
from tether.api.interaction import InteractionSpec
from tether.api.internal import BROWSER_FUNCTIONS
from tether.sandbox.agent import BROWSER_TOOLS, offered_tools

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


def test_an_environment_adds_its_env_network_and_instruction_between_agent_and_request():
    kept = EnvironmentSpec.from_wire(
        {
            "env": {"TZ": "UTC", "LANG": "C"},
            "network": {"allowlist": [{"domain": "git.example.com"}]},
            "system_instruction": "Notes go in notes.md.",
            "sources": [{"type": "inline", "target": "a.txt", "content": "a"}],
        }
    )
    run = resolve(
        "eva",
        [EVA],
        request(system_instruction="Be brief.", environment={"env": {"LANG": "en_GB"}}),
        ("env-1", kept),
    )
    assert run.environment_id == "env-1"
    assert run.environment.env == {"TZ": "UTC", "LANG": "en_GB"}
    assert run.environment.network.domains() == ["git.example.com"]
    assert run.system_instruction == "Notes go in notes.md.\n\nBe brief."
    assert [s.target for s in run.seeds] == ["a.txt"]
    assert resolve("eva", [EVA], request()).environment_id is None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [("remote", None), (None, None), ("env-1", "env-1"), ({"environment_id": "env-2"}, "env-2")],
)
def test_the_environment_a_request_runs_in(environment, expected):
    assert request(environment=environment).environment_id() == expected


def test_an_environment_id_that_is_no_object_name_is_refused():
    for bad in ("../x", "Env", "a/b", "", "-x"):
        with pytest.raises(ValueError, match='neither "remote" nor an environment id'):
            request(environment=bad)


def test_computer_use_offers_the_browser_tools_less_those_excluded():
    names = [t["name"] for t in offered_tools([])]
    assert not set(BROWSER_FUNCTIONS) & set(names)
    browser = {"type": "computer_use", "environment": "browser"}
    assert [t["name"] for t in offered_tools([browser])][-4:] == list(BROWSER_FUNCTIONS)
    assert [t["name"] for t in BROWSER_TOOLS] == list(BROWSER_FUNCTIONS)
    excluded = {**browser, "excluded_predefined_functions": ["browser_screenshot"]}
    client = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    names = [t["name"] for t in offered_tools([excluded, client])]
    assert names[-4:] == ["browser_navigate", "browser_click", "browser_type", "lookup"]


@pytest.mark.parametrize(
    "tool, problem",
    [
        ({"type": "computer_use", "environment": "desktop"}, "agents operate a browser"),
        (
            {"type": "computer_use", "excluded_predefined_functions": ["click_at"]},
            "'click_at' is not a browser tool",
        ),
        (
            {"type": "computer_use", "disabled_safety_policies": ["account_creation"]},
            "disabled_safety_policies: Tether's browser tools have no safety policies",
        ),
        ({"type": "google_search"}, "'google_search' is not available to agents"),
    ],
)
def test_agent_tools_that_would_be_ignored_are_refused_naming_the_field(tool, problem):
    [message] = tool_problems([Tool.model_validate(tool)])
    assert message.startswith("tools[0]") and problem in message


def test_a_browser_tool_is_an_agent_tool():
    assert list(tool_problems([Tool(type="computer_use", environment="browser")])) == []


def test_a_requests_exclusions_narrow_the_agents_browser():
    agents_own = {"type": "computer_use", "environment": "browser"}
    requests = {"type": "computer_use", "excluded_predefined_functions": ["browser_type"]}
    names = [t["name"] for t in offered_tools([agents_own, requests])]
    assert "browser_type" not in names and "browser_click" in names
